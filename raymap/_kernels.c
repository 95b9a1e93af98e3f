/* raymap's per-mesh loops in C: normalization, an STL's corner merge, the hull's planes and
 * the rays' features.
 *
 * What numpy did here in a few hundred small calls (a 1k-face mesh spent most of its input
 * stage in them, and in reloading numpy's code between them), each function does in one
 * pass, without the GIL. The arithmetic is numpy's, operation by operation and in the same
 * types (float32 where the features are float32), and the sums over a mesh are still
 * numpy's, so the maps are numpy's bit for bit but where a ray enters a small hull: its
 * planes' products are summed in order here, by BLAS in numpy (a last-bit difference, which
 * can pick the other plane at an edge). Built with -ffp-contract=off: a fused multiply-add
 * would round differently.
 *
 * raymap/normalize.py, raymap/distinct.py, raymap/hull.py and raymap/cast.py call these;
 * the tests hold the numpy each replaced, as the reference (tests/raymap_testing.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Embree 4's rtcIntersect8 (rtcore_ray.h): valid mask, scene, RTCRayHit8, arguments. */
typedef void (*intersect8_fn)(const int *, void *, void *, void *);

/* RTCRayHit8, structure of arrays, LANES lanes a row (raymap/cast.py names the same rows):
 * ray: org_x, org_y, org_z, tnear, dir_x, dir_y, dir_z, time, tfar, mask, id, flags;
 * hit: Ng_x, Ng_y, Ng_z, u, v, primID, geomID, instID (+ a spare row). */
enum { LANES = 8, ROWS = 21, ORG = 0, DIR = 4, TFAR = 8, MASK = 9, NG = 12, GEOM_ID = 18,
       INST_ID = 19 };
#define INVALID_ID 0xFFFFFFFFu

/* Outcomes besides a count (raymap/normalize.py, raymap/distinct.py). */
enum { ZERO_EXTENT = -1, NOT_FINITE = -2, NO_MEMORY = -4, OUT_OF_RANGE = -5,
       SHARED_HIGH_BITS = -6 };

static float clip01f(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static double clip01(double x) { return x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x); }

/* Whether ``view`` holds ``count`` items of ``itemsize`` bytes (a wrong call is a
 * ValueError, never a read past the end). */
static int check_size(Py_buffer *view, Py_ssize_t count, Py_ssize_t itemsize, const char *name) {
    if (view->len != count * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", name, view->len,
                     count * itemsize);
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------------- normalization */

/* The faces' part of normalization: the used vertices renumbered and scaled by a power of
 * two near 1, and each face's twice-area and corner sum; numpy then sums these (pairwise and
 * by BLAS, as before: a sum in another order moved the centre by an ulp, which moved a hull's
 * triangulation on a few meshes), and center_and_scale ends the job. */
static int64_t faces_loops(const double *vertices, int64_t n_vertices, const int64_t *faces,
                           int64_t n_faces, double *out_vertices, int32_t *out_faces,
                           double *twice_areas, double *corner_sums, double *unit_out) {
    for (int64_t j = 0; j < 3 * n_faces; j++)
        if (faces[j] < 0 || faces[j] >= n_vertices) return OUT_OF_RANGE;
    int64_t *renumber = malloc(sizeof(int64_t) * (size_t)(n_vertices ? n_vertices : 1));
    if (!renumber) return NO_MEMORY;
    for (int64_t i = 0; i < n_vertices; i++) renumber[i] = -1;
    for (int64_t j = 0; j < 3 * n_faces; j++) renumber[faces[j]] = 0;
    /* Only vertices used by a face count. */
    int64_t used = 0;
    double largest = 0.0;
    for (int64_t i = 0; i < n_vertices; i++) {
        if (renumber[i] < 0) continue;
        renumber[i] = used;
        for (int k = 0; k < 3; k++) {
            double value = vertices[3 * i + k];
            if (!(fabs(value) <= largest)) largest = fabs(value); /* a NaN stays */
            out_vertices[3 * used + k] = value;
        }
        used++;
    }
    for (int64_t j = 0; j < 3 * n_faces; j++) out_faces[j] = (int32_t)renumber[faces[j]];
    free(renumber);
    if (!(largest > 0.0 && largest < INFINITY)) return largest == 0.0 ? ZERO_EXTENT : NOT_FINITE;
    /* A power-of-two scale near 1: exact, and the areas cannot overflow. */
    int exponent;
    frexp(largest, &exponent);
    double unit = ldexp(1.0, -exponent);
    for (int64_t i = 0; i < 3 * used; i++) out_vertices[i] *= unit;
    for (int64_t j = 0; j < n_faces; j++) {
        const double *a = out_vertices + 3 * out_faces[3 * j];
        const double *b = out_vertices + 3 * out_faces[3 * j + 1];
        const double *c = out_vertices + 3 * out_faces[3 * j + 2];
        double ax = b[0] - a[0], ay = b[1] - a[1], az = b[2] - a[2];
        double bx = c[0] - a[0], by = c[1] - a[1], bz = c[2] - a[2];
        double nx = ay * bz - az * by, ny = az * bx - ax * bz, nz = ax * by - ay * bx;
        twice_areas[j] = sqrt((nx * nx + ny * ny) + nz * nz);
        for (int k = 0; k < 3; k++) corner_sums[3 * j + k] = (a[k] + b[k]) + c[k];
    }
    *unit_out = unit;
    return used;
}

PyDoc_STRVAR(normalize_faces_doc,
"normalize_faces(vertices, faces, out_vertices, out_faces, twice_areas, corner_sums, unit)\n"
"    -> int\n\n"
"The faces' part of normalizing a mesh: vertices (V, 3) float64 and faces (F, 3) int64 in;\n"
"the vertices some face uses, renumbered and scaled by a power of two near 1 (unit (1,)\n"
"float64), into out_vertices (V, 3) float64 and out_faces (F, 3) int32, and each face's\n"
"twice-area (F,) and corner sum (F, 3), float64. Returns the number of vertices used, or -1\n"
"(zero extent), -2 (not finite), -4 (no memory), -5 (a face index out of range).");

static PyObject *normalize_faces(PyObject *self, PyObject *args) {
    Py_buffer vertices, faces, out_vertices, out_faces, twice_areas, corner_sums, unit;
    if (!PyArg_ParseTuple(args, "y*y*w*w*w*w*w*", &vertices, &faces, &out_vertices, &out_faces,
                          &twice_areas, &corner_sums, &unit))
        return NULL;
    Py_ssize_t n_vertices = vertices.len / 24, n_faces = faces.len / 24;
    PyObject *result = NULL;
    if (check_size(&vertices, 3 * n_vertices, 8, "vertices") &&
        check_size(&faces, 3 * n_faces, 8, "faces") &&
        check_size(&out_vertices, 3 * n_vertices, 8, "out_vertices") &&
        check_size(&out_faces, 3 * n_faces, 4, "out_faces") &&
        check_size(&twice_areas, n_faces, 8, "twice_areas") &&
        check_size(&corner_sums, 3 * n_faces, 8, "corner_sums") &&
        check_size(&unit, 1, 8, "unit")) {
        int64_t used;
        Py_BEGIN_ALLOW_THREADS
        used = faces_loops(vertices.buf, n_vertices, faces.buf, n_faces, out_vertices.buf,
                           out_faces.buf, twice_areas.buf, corner_sums.buf, unit.buf);
        Py_END_ALLOW_THREADS
        result = PyLong_FromLongLong(used);
    }
    PyBuffer_Release(&vertices);
    PyBuffer_Release(&faces);
    PyBuffer_Release(&out_vertices);
    PyBuffer_Release(&out_faces);
    PyBuffer_Release(&twice_areas);
    PyBuffer_Release(&corner_sums);
    PyBuffer_Release(&unit);
    return result;
}

static double center_loops(double *vertices, int64_t n_vertices, const double *center) {
    double farthest = 0.0;
    for (int64_t i = 0; i < n_vertices; i++) {
        double *p = vertices + 3 * i;
        for (int k = 0; k < 3; k++) p[k] -= center[k];
        double squared = (p[0] * p[0] + p[1] * p[1]) + p[2] * p[2];
        if (squared > farthest) farthest = squared;
    }
    double scale = sqrt(farthest);
    if (scale > 0.0)
        for (int64_t i = 0; i < 3 * n_vertices; i++) vertices[i] /= scale;
    return scale;
}

PyDoc_STRVAR(center_and_scale_doc,
"center_and_scale(vertices, center) -> float\n\n"
"Move vertices (V, 3) float64, in place, by -center (3,) and divide them by the largest\n"
"distance of one from it, which is returned (0: they were all at the centre, and are left\n"
"moved only).");

static PyObject *center_and_scale(PyObject *self, PyObject *args) {
    Py_buffer vertices, center;
    if (!PyArg_ParseTuple(args, "w*y*", &vertices, &center)) return NULL;
    Py_ssize_t n_vertices = vertices.len / 24;
    PyObject *result = NULL;
    if (check_size(&vertices, 3 * n_vertices, 8, "vertices") &&
        check_size(&center, 3, 8, "center")) {
        double scale;
        Py_BEGIN_ALLOW_THREADS
        scale = center_loops(vertices.buf, n_vertices, center.buf);
        Py_END_ALLOW_THREADS
        result = PyFloat_FromDouble(scale);
    }
    PyBuffer_Release(&vertices);
    PyBuffer_Release(&center);
    return result;
}

/* ------------------------------------------------------------------ distinct positions */

static int compare_keys(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int64_t distinct_loops(const uint64_t *bits, const uint64_t *hashes, int64_t n,
                              int index_bits, int64_t *first, int64_t *inverse) {
    /* Each point's first occurrence (inverse[i], for now), by an open-addressing table of
     * 2n slots or more, keyed by the position's bits, placed by its hash's high bits. */
    int table_bits = 1;
    while (((int64_t)1 << table_bits) < 2 * n) table_bits++;
    int64_t size = (int64_t)1 << table_bits, mask = size - 1;
    int64_t *table = malloc(sizeof(int64_t) * (size_t)size);
    uint64_t *keys = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    if (!table || !keys) {
        free(table);
        free(keys);
        return NO_MEMORY;
    }
    for (int64_t slot = 0; slot < size; slot++) table[slot] = -1;
    for (int64_t i = 0; i < n; i++) {
        const uint64_t *p = bits + 3 * i;
        for (int64_t slot = (int64_t)(hashes[i] >> (64 - table_bits));; slot = (slot + 1) & mask) {
            int64_t j = table[slot];
            if (j < 0) {
                table[slot] = i;
                inverse[i] = i;
                break;
            }
            const uint64_t *q = bits + 3 * j;
            if (p[0] == q[0] && p[1] == q[1] && p[2] == q[2]) {
                inverse[i] = j;
                break;
            }
        }
    }
    /* The first occurrences in the order of their keys: the hash's high bits, the index in
     * the low ones (raymap/distinct.py's order); two positions whose keys share the high bits
     * are left to the sorting path there. */
    uint64_t low = ((uint64_t)1 << index_bits) - 1;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++)
        if (inverse[i] == i) keys[count++] = (hashes[i] & ~low) | (uint64_t)i;
    qsort(keys, (size_t)count, sizeof(uint64_t), compare_keys);
    int64_t result = count;
    for (int64_t k = 1; k < count; k++)
        if ((keys[k] >> index_bits) == (keys[k - 1] >> index_bits)) result = SHARED_HIGH_BITS;
    if (result >= 0) {
        int64_t *rank = table; /* reused: n <= size */
        for (int64_t k = 0; k < count; k++) {
            first[k] = (int64_t)(keys[k] & low);
            rank[first[k]] = k;
        }
        for (int64_t i = 0; i < n; i++) inverse[i] = rank[inverse[i]];
    }
    free(table);
    free(keys);
    return result;
}

PyDoc_STRVAR(distinct_points_doc,
"distinct_points(bits, hashes, index_bits, first, inverse) -> int\n\n"
"Equal positions among n points, by their bits (n, 3) uint64, placed by their hashes (n,)\n"
"uint64: into first (n,) int64, one point of each position (the first), ordered by the key\n"
"(the hash's high bits, the point's index in the low index_bits); into inverse (n,) int64,\n"
"each point's position in that order. Returns the number of positions, or -4 (no memory),\n"
"-6 (two positions' keys share their high bits: sort them instead).");

static PyObject *distinct_points(PyObject *self, PyObject *args) {
    Py_buffer bits, hashes, first, inverse;
    int index_bits;
    if (!PyArg_ParseTuple(args, "y*y*iw*w*", &bits, &hashes, &index_bits, &first, &inverse))
        return NULL;
    Py_ssize_t n = hashes.len / 8;
    PyObject *result = NULL;
    if (index_bits < 1 || index_bits > 62 || ((int64_t)1 << index_bits) < n) {
        PyErr_SetString(PyExc_ValueError, "index_bits: too few bits for the points' indices");
    } else if (check_size(&bits, 3 * n, 8, "bits") && check_size(&hashes, n, 8, "hashes") &&
               check_size(&first, n, 8, "first") && check_size(&inverse, n, 8, "inverse")) {
        int64_t count;
        Py_BEGIN_ALLOW_THREADS
        count = distinct_loops(bits.buf, hashes.buf, n, index_bits, first.buf, inverse.buf);
        Py_END_ALLOW_THREADS
        result = PyLong_FromLongLong(count);
    }
    PyBuffer_Release(&bits);
    PyBuffer_Release(&hashes);
    PyBuffer_Release(&first);
    PyBuffer_Release(&inverse);
    return result;
}

/* ----------------------------------------------------------------------- hull planes */

static int planes_loops(const double *vertices, int64_t n_vertices, const int32_t *faces,
                        int64_t n_faces, double min_twice_area, double min_depth,
                        double tolerance, double *planes) {
    double *reach_x = planes, *reach_y = planes + n_faces, *reach_z = planes + 2 * n_faces;
    double *offsets = planes + 3 * n_faces;
    for (int64_t t = 0; t < n_faces; t++) {
        const double *a = vertices + 3 * faces[3 * t];
        const double *b = vertices + 3 * faces[3 * t + 1];
        const double *c = vertices + 3 * faces[3 * t + 2];
        double ux = b[0] - a[0], uy = b[1] - a[1], uz = b[2] - a[2];
        double vx = c[0] - a[0], vy = c[1] - a[1], vz = c[2] - a[2];
        double nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
        double twice_area = sqrt((nx * nx + ny * ny) + nz * nz);
        if (!(twice_area > min_twice_area)) return 0;
        nx /= twice_area;
        ny /= twice_area;
        nz /= twice_area;
        double offset = (nx * a[0] + ny * a[1]) + nz * a[2];
        if (!(offset > min_depth)) return 0;
        for (int64_t i = 0; i < n_vertices; i++) {
            const double *p = vertices + 3 * i;
            if (((p[0] * nx + p[1] * ny) + p[2] * nz) - offset > tolerance) return 0;
        }
        reach_x[t] = nx / offset;
        reach_y[t] = ny / offset;
        reach_z[t] = nz / offset;
        offsets[t] = offset;
    }
    return 1;
}

PyDoc_STRVAR(hull_planes_doc,
"hull_planes(vertices, faces, min_twice_area, min_depth, tolerance, planes) -> bool\n\n"
"The planes n . x = h of a convex hull's triangles (vertices (H, 3) float64, faces (T, 3)\n"
"int32 wound outward) into planes (4, T) float64: rows n_x / h, n_y / h, n_z / h and h. False\n"
"(planes undefined) when they should not stand for the hull: a triangle of twice its area\n"
"at most min_twice_area, a plane at most min_depth from the centre, or a hull vertex more\n"
"than tolerance outside a plane.");

static PyObject *hull_planes(PyObject *self, PyObject *args) {
    Py_buffer vertices, faces, planes;
    double min_twice_area, min_depth, tolerance;
    if (!PyArg_ParseTuple(args, "y*y*dddw*", &vertices, &faces, &min_twice_area, &min_depth,
                          &tolerance, &planes))
        return NULL;
    Py_ssize_t n_vertices = vertices.len / 24, n_faces = faces.len / 12;
    PyObject *result = NULL;
    if (check_size(&vertices, 3 * n_vertices, 8, "vertices") &&
        check_size(&faces, 3 * n_faces, 4, "faces") &&
        check_size(&planes, 4 * n_faces, 8, "planes")) {
        const int32_t *indices = faces.buf;
        int in_range = 1;
        for (Py_ssize_t j = 0; j < 3 * n_faces; j++)
            in_range &= indices[j] >= 0 && indices[j] < n_vertices;
        if (!in_range) {
            PyErr_SetString(PyExc_ValueError, "faces: an index out of range");
        } else {
            int found;
            Py_BEGIN_ALLOW_THREADS
            found = planes_loops(vertices.buf, n_vertices, indices, n_faces, min_twice_area,
                                 min_depth, tolerance, planes.buf);
            Py_END_ALLOW_THREADS
            result = PyBool_FromLong(found);
        }
    }
    PyBuffer_Release(&vertices);
    PyBuffer_Release(&faces);
    PyBuffer_Release(&planes);
    return result;
}

static void entry_loops(const double *planes, int64_t n_planes, const double *outward,
                        int64_t n_rays, float *out) {
    const double *reach_x = planes, *reach_y = planes + n_planes, *reach_z = planes + 2 * n_planes;
    const double *offsets = planes + 3 * n_planes;
    float *distance = out, *cos_out = out + n_rays, *sin_out = out + 2 * n_rays;
    for (int64_t i = 0; i < n_rays; i++) {
        double x = outward[3 * i], y = outward[3 * i + 1], z = outward[3 * i + 2];
        double nearest = -INFINITY;
        int64_t plane = 0;
        for (int64_t t = 0; t < n_planes; t++) { /* the first of the largest, as argmax */
            double reach = (x * reach_x[t] + y * reach_y[t]) + z * reach_z[t];
            if (reach > nearest) {
                nearest = reach;
                plane = t;
            }
        }
        double radius = 1.0 / nearest;
        distance[i] = (float)clip01((1.0 - radius) * 0.5); /* travelled from the unit sphere */
        float cos = (float)clip01(nearest * offsets[plane]);
        cos_out[i] = cos;
        sin_out[i] = sqrtf(1.0f - cos * cos);
    }
}

PyDoc_STRVAR(hull_features_doc,
"hull_features(planes, outward, out)\n\n"
"The features (distance, |cos|, sin) of rays toward the centre along -u, for unit outward\n"
"(R, 3) float64 directions u, entering the convex hull of planes (4, T) (hull_planes): into\n"
"out (3, R) float32. A ray enters through the plane of largest n . u / h, at radius\n"
"h / n . u.");

static PyObject *hull_features(PyObject *self, PyObject *args) {
    Py_buffer planes, outward, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &planes, &outward, &out)) return NULL;
    Py_ssize_t n_planes = planes.len / 32, n_rays = outward.len / 24;
    PyObject *result = NULL;
    if (check_size(&planes, 4 * n_planes, 8, "planes") &&
        check_size(&outward, 3 * n_rays, 8, "outward") && check_size(&out, 3 * n_rays, 4, "out")) {
        if (n_planes == 0) {
            PyErr_SetString(PyExc_ValueError, "planes: none");
        } else {
            Py_BEGIN_ALLOW_THREADS
            entry_loops(planes.buf, n_planes, outward.buf, n_rays, out.buf);
            Py_END_ALLOW_THREADS
            result = Py_NewRef(Py_None);
        }
    }
    PyBuffer_Release(&planes);
    PyBuffer_Release(&outward);
    PyBuffer_Release(&out);
    return result;
}

/* ---------------------------------------------------------------------------- rays */

static void cast_loops(intersect8_fn intersect, void *scene, const float *origins,
                       const float *directions, int64_t n_rays, float start_offset, float *out) {
    _Alignas(64) float packet[ROWS * LANES];
    uint32_t *as_uint = (uint32_t *)packet;
    float *distance = out, *cos_out = out + n_rays, *sin_out = out + 2 * n_rays;
    for (int64_t first = 0; first < n_rays; first += LANES) {
        int lanes = n_rays - first < LANES ? (int)(n_rays - first) : LANES;
        _Alignas(32) int valid[LANES]; /* Embree loads the mask as one vector */
        memset(packet, 0, sizeof packet);
        for (int l = 0; l < LANES; l++) {
            valid[l] = l < lanes ? -1 : 0; /* the last packet's spare lanes are not cast */
            int64_t ray = first + (l < lanes ? l : 0);
            for (int k = 0; k < 3; k++) {
                packet[(ORG + k) * LANES + l] = origins[3 * ray + k];
                packet[(DIR + k) * LANES + l] = directions[3 * ray + k];
            }
            packet[TFAR * LANES + l] = INFINITY;
            as_uint[MASK * LANES + l] = INVALID_ID;
            as_uint[GEOM_ID * LANES + l] = INVALID_ID;
            as_uint[INST_ID * LANES + l] = INVALID_ID;
        }
        intersect(valid, scene, packet, NULL);
        for (int l = 0; l < lanes; l++) {
            int64_t ray = first + l;
            if (as_uint[GEOM_ID * LANES + l] == INVALID_ID) { /* a miss: raymap/features.py */
                distance[ray] = 1.0f;
                cos_out[ray] = 0.0f;
                sin_out[ray] = 0.0f;
                continue;
            }
            float travelled = packet[TFAR * LANES + l] - start_offset; /* from the unit sphere */
            distance[ray] = clip01f(travelled * 0.5f);
            float nx = packet[NG * LANES + l], ny = packet[(NG + 1) * LANES + l];
            float nz = packet[(NG + 2) * LANES + l];
            const float *d = directions + 3 * ray;
            float length = sqrtf((nx * nx + ny * ny) + nz * nz);
            float dot = fabsf((nx * d[0] + ny * d[1]) + nz * d[2]);
            float cos = length > 0.0f ? dot / length : 1.0f; /* a degenerate face: no angle */
            cos = clip01f(cos);
            cos_out[ray] = cos;
            float squared_sin = 1.0f - cos * cos;
            sin_out[ray] = sqrtf(squared_sin > 0.0f ? squared_sin : 0.0f);
        }
    }
}

PyDoc_STRVAR(ray_features_doc,
"ray_features(intersect8, scene, origins, directions, start_offset, out)\n\n"
"Cast the rays origins + t directions ((R, 3) float32 each, unit directions) at the Embree\n"
"scene (an RTCScene's address) with rtcIntersect8 (its address) and write their features\n"
"into out (3, R) float32: the first hit's distance past start_offset, halved and clipped to\n"
"[0, 1], and |cos|, sin of the angle between the ray and the hit face's normal; a miss is\n"
"(1, 0, 0).");

static PyObject *ray_features(PyObject *self, PyObject *args) {
    unsigned long long intersect, scene;
    Py_buffer origins, directions, out;
    float start_offset;
    if (!PyArg_ParseTuple(args, "KKy*y*fw*", &intersect, &scene, &origins, &directions,
                          &start_offset, &out))
        return NULL;
    Py_ssize_t n_rays = origins.len / 12;
    PyObject *result = NULL;
    if (!intersect || !scene) {
        PyErr_SetString(PyExc_ValueError, "intersect8 and scene must be addresses");
    } else if (check_size(&origins, 3 * n_rays, 4, "origins") &&
               check_size(&directions, 3 * n_rays, 4, "directions") &&
               check_size(&out, 3 * n_rays, 4, "out")) {
        Py_BEGIN_ALLOW_THREADS
        cast_loops((intersect8_fn)(uintptr_t)intersect, (void *)(uintptr_t)scene, origins.buf,
                   directions.buf, n_rays, start_offset, out.buf);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&origins);
    PyBuffer_Release(&directions);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"normalize_faces", normalize_faces, METH_VARARGS, normalize_faces_doc},
    {"center_and_scale", center_and_scale, METH_VARARGS, center_and_scale_doc},
    {"distinct_points", distinct_points, METH_VARARGS, distinct_points_doc},
    {"hull_planes", hull_planes, METH_VARARGS, hull_planes_doc},
    {"hull_features", hull_features, METH_VARARGS, hull_features_doc},
    {"ray_features", ray_features, METH_VARARGS, ray_features_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "raymap._kernels",
    "raymap's per-mesh loops in C (raymap/_kernels.c).", -1, methods,
};

/* The outcomes' codes, for Python to name rather than repeat. */
PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "ZERO_EXTENT", ZERO_EXTENT) < 0 ||
        PyModule_AddIntConstant(m, "NOT_FINITE", NOT_FINITE) < 0 ||
        PyModule_AddIntConstant(m, "NO_MEMORY", NO_MEMORY) < 0 ||
        PyModule_AddIntConstant(m, "OUT_OF_RANGE", OUT_OF_RANGE) < 0 ||
        PyModule_AddIntConstant(m, "SHARED_HIGH_BITS", SHARED_HIGH_BITS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
