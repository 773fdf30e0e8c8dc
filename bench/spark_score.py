"""Batch scoring on Spark (`fruit360.spark`) against `predict_batch` in this process, on the same images, in the same run.

    FRUIT360_DATA=../shared/fruits-360-subset python bench/spark_score.py [--data FOLDER] [--cores 2] [--model DIR] [--passes 2]

Packages the shipped model as `fruit360 package --out DIR` does (`save_mlflow_model`; `--model` takes a packaged one
instead), starts Spark `local[cores]` and scores every image file under FOLDER (default: $FRUIT360_DATA/Test) with
`classify_images` (`mlflow.pyfunc.spark_udf`, env_manager='local'), `--passes` times: the first pass includes starting
Spark's Python workers and loading the model in them. Then `predict_batch` classifies the same files in this process.
Checks that every answer is equal (class and `known` exactly, probabilities and novelty to 1e-5), and prints images/s
of both, their ratio and the load average (the machine may be shared).
"""
import argparse, os, sys, tempfile, time
from pathlib import Path
from urllib.parse import unquote, urlsplit


def local_path(uri:str) -> str:
    "The local file name of a `file:` path as Spark's binaryFile source gives it."
    return unquote(urlsplit(uri).path)


def differences(spark_rows:dict, local:dict, tol:float=1e-5) -> list[str]:
    "The files whose Spark answer differs from `predict_batch`'s: a different class or `known`, or a probability or novelty off by over `tol`."
    bad = []
    for f, a in local.items():
        s = spark_rows.get(f)
        if s is None: bad.append(f'{f}: no Spark answer'); continue
        p, q = s['probabilities'], a['probabilities']
        same = (s['class'] == a['class'] and s['known'] == a['known'] and abs(s['novelty'] - a['novelty']) <= tol
                and p.keys() == q.keys() and all(abs(p[k] - q[k]) <= tol for k in q))
        if not same: bad.append(f'{f}: Spark {s["class"]} vs predict_batch {a["class"]}')
    return bad + [f'{f}: not classified by predict_batch' for f in spark_rows.keys() - local.keys()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', help='folder of image files (default: $FRUIT360_DATA/Test)')
    ap.add_argument('--cores', type=int, default=2, help='Spark worker threads, local[N]')
    ap.add_argument('--model', help='an MLflow model folder saved by fruit360 package (default: the shipped model, packaged here)')
    ap.add_argument('--passes', type=int, default=2, help='Spark passes over the images (the first starts the workers)')
    args = ap.parse_args()
    if args.data is None and not os.environ.get('FRUIT360_DATA'): sys.exit('spark_score: pass --data FOLDER or set FRUIT360_DATA')
    folder = Path(args.data or Path(os.environ['FRUIT360_DATA'])/'Test').resolve()
    if not folder.is_dir(): sys.exit(f"spark_score: '{folder}' is not a folder")

    from fruit360.infer import predict_batch
    from fruit360.serve import save_mlflow_model
    from fruit360.spark import classify_images, local_spark, read_images
    tmp = tempfile.TemporaryDirectory(prefix='fruit360-spark-bench-')
    model = args.model or str(save_mlflow_model(path=Path(tmp.name)/'mlflow_model'))

    t = time.perf_counter()
    spark = local_spark(args.cores)
    spark.sparkContext.setLogLevel('ERROR')
    started = time.perf_counter() - t
    times = []
    try:
        for _ in range(args.passes):
            t = time.perf_counter()
            rows = classify_images(read_images(spark, str(folder)), model).collect()
            times.append(time.perf_counter() - t)
    finally: spark.stop()
    errors = [r for r in rows if r.error is not None]
    answers = {local_path(r.path): r.prediction.asDict() for r in rows if r.error is None}
    files = sorted(answers)

    t = time.perf_counter()
    local = dict(zip(files, predict_batch(files, bs=64)))
    in_process = time.perf_counter() - t

    bad = differences(answers, local)
    n = len(files)
    print(f'{folder}: {len(rows)} image files, {n} classified, {len(errors)} refused')
    print(f'Spark local[{args.cores}] session start: {started:.1f} s')
    for i, s in enumerate(times, 1): print(f'Spark pass {i}: {s:.1f} s, {n / s:.0f} images/s' + (' (workers starting)' if i == 1 else ''))
    print(f'predict_batch in process: {in_process:.1f} s, {n / in_process:.0f} images/s')
    print(f'ratio Spark (last pass) / predict_batch: {in_process / times[-1]:.2f}')
    print(f'answers equal: {not bad}' + ''.join(f'\n  {b}' for b in bad[:10]))
    print('load average (1, 5, 15 min): ' + ' '.join(f'{x:.2f}' for x in os.getloadavg()) + f' on {os.cpu_count()} cores')
    tmp.cleanup()
    return 1 if bad or not n else 0


if __name__ == '__main__': sys.exit(main())
