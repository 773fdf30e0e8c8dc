"fruit360's benchmarks: run each as a script (`python bench/infer.py`), or as a module from the project root (`python -m bench.serve_http`)."
