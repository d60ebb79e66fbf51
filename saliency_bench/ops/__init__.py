"""Numerical operations the benchmarks are built on, with no benchmark logic: box geometry
(:mod:`.geometry`), numba kernels and their dispatch (:mod:`.jit`), Pillow's bilinear resize and
the authors' ``imresize`` emulated (:mod:`.pil_taps`, :mod:`.pil_resize`), contour boxes at every threshold at once
(:mod:`.contours`), the Gaussian blurs (:mod:`.blur`) and the map resize (:mod:`.resize`)."""
