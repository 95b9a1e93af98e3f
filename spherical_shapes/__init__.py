"""The ``spherical-shapes`` command line: offline inference, maps, serving, and thin
front-ends of dataset builds, training, evaluation, export and gallery builds."""
