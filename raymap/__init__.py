"""Mesh -> spherical map: the torch-free input stage shared by training and the service."""
