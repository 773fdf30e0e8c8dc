"""Batch scoring on Spark (`fruit360.spark`, nbs/04b_scale_out.ipynb): a real local[2] Spark session scores folders of image
files through `mlflow.pyfunc.spark_udf` with the packaged model, and its answers are `predict_batch`'s. Skipped without Java."""
import os, shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest
from conftest import REAL, needs_real_data

pytest.importorskip('pyspark')
pytestmark = pytest.mark.skipif(shutil.which('java') is None and not os.environ.get('JAVA_HOME'),
                                reason="Spark needs Java: install Debian's openjdk-17-jre-headless (make java)")


@pytest.fixture(scope='module')
def spark():
    "A local[2] Spark session for this module, bound to 127.0.0.1 with no web UI; stopped at the end."
    from fruit360.spark import local_spark
    session = local_spark(2)
    session.sparkContext.setLogLevel('ERROR')
    yield session
    session.stop()


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory) -> str:
    "The shipped model packaged as an MLflow model, as `fruit360 package --out DIR` saves it."
    from fruit360.serve import save_mlflow_model
    return str(save_mlflow_model(path=tmp_path_factory.mktemp('model')/'mlflow_model'))


def scored(spark, path, model_dir, **kw) -> dict:
    "Local file name -> (prediction as a dict or None, error) for every image file `read_images` finds under `path`."
    from fruit360.spark import classify_images, read_images
    rows = classify_images(read_images(spark, path), model_dir, **kw).collect()
    return {unquote(urlsplit(r.path).path): (r.prediction and r.prediction.asDict(), r.error) for r in rows}


def assert_same_as_predict_batch(got:dict, files:list, topk=None, tol=1e-5):
    "Spark's answers for `files` are predict_batch's: class and known exactly, probabilities (the same classes) and novelty to `tol`."
    from fruit360.infer import predict_batch
    for f, a in zip(files, predict_batch(files, topk=topk)):
        s, error = got[str(f)]
        assert error is None, error
        assert (s['class'], s['known']) == (a['class'], a['known']), f
        assert abs(s['novelty'] - a['novelty']) <= tol, f
        assert s['probabilities'].keys() == a['probabilities'].keys(), f
        assert max(abs(s['probabilities'][k] - v) for k, v in a['probabilities'].items()) <= tol, f


def test_session_listens_on_loopback_only(spark):
    "The test session's driver binds 127.0.0.1 and starts no web UI; each model call gets at most 64 images."
    from fruit360.serve import MAX_BATCH
    from fruit360.spark import ARROW_BATCH
    assert spark.conf.get('spark.driver.host') == spark.conf.get('spark.driver.bindAddress') == '127.0.0.1'
    assert spark.sparkContext.uiWebUrl is None
    assert int(spark.conf.get(ARROW_BATCH)) == MAX_BATCH


@pytest.fixture(scope='module')
def photos(fixture_data, tmp_path_factory) -> dict:
    "A folder of generated images (nested, one named in upper case) with a text file, a text file, an icon, a JPEG cut short and an empty file named as images, and a file over the size limit."
    from PIL import Image
    from fruit360.serve import MAX_IMAGE_BYTES
    folder = tmp_path_factory.mktemp('spark')/'photos'
    shutil.copytree(fixture_data/'Test', folder)
    (folder/'more'/'deeper').mkdir(parents=True)
    shutil.copy(sorted(folder.rglob('*.jpg'))[0], folder/'more'/'deeper'/'UPPER.JPG')
    images = sorted(p for p in folder.rglob('*') if p.suffix.lower() == '.jpg')
    (folder/'notes.txt').write_text('not an image, and not named as one')
    (folder/'notes.jpg').write_text('hello')
    (folder/'cut.jpg').write_bytes(images[0].read_bytes()[:images[0].stat().st_size // 2])  # its header is whole
    Image.new('RGB', (32, 32), 'red').save(folder/'icon.png', 'ICO')
    (folder/'empty.jpg').write_bytes(b'')
    with open(folder/'huge.png', 'wb') as f: f.write(b'\x89PNG\r\n\x1a\n'); f.truncate(MAX_IMAGE_BYTES + 1)
    return dict(folder=folder, images=images)


@pytest.fixture(scope='module')
def photos_scored(spark, model_dir, photos) -> dict:
    "The answers for every file of `photos`, from one Spark job (topk=3)."
    return scored(spark, str(photos['folder']), model_dir, topk=3)


def test_folder_scored_as_predict_batch(photos, photos_scored):
    "Every image file under a folder (nested, any letter case) is classified as predict_batch classifies it; files not named as images are not read."
    good = {f: a for f, a in photos_scored.items() if a[1] is None}
    assert sorted(good) == [str(f) for f in photos['images']] and len(good) > 20
    assert str(photos['folder']/'notes.txt') not in photos_scored
    assert_same_as_predict_batch(photos_scored, photos['images'], topk=3)


def test_bad_files_get_an_error_row_and_the_job_finishes(photos, photos_scored):
    "A text file and an icon named as images, a truncated JPEG and a file over the size limit each get an error row that names it, in the same job as the good images. An empty file gets no row (Spark's binaryFile source leaves it out; documented)."
    errors = {Path(f).name: e for f, (p, e) in photos_scored.items() if p is None}
    assert set(errors) == {'notes.jpg', 'icon.png', 'cut.jpg', 'huge.png'}
    assert str(photos['folder']/'empty.jpg') not in photos_scored
    for name, e in errors.items(): assert f'/{name}' in e, e
    assert 'is not a readable image' in errors['notes.jpg']
    assert 'ICO format' in errors['icon.png']
    assert 'damaged or truncated' in errors['cut.jpg']
    assert 'over 20,000,000 bytes' in errors['huge.png']


@needs_real_data
def test_real_test_images_scored_as_predict_batch(spark, model_dir):
    "Two real Test images of every class, given as a list of files: Spark's answers are predict_batch's, all classes."
    files = [f for d in sorted((REAL/'Test').iterdir()) if d.is_dir() for f in sorted(d.iterdir())[:2]]
    got = scored(spark, [str(f) for f in files], model_dir)
    assert len(got) == len(files) >= 100
    assert_same_as_predict_batch(got, files)


def test_refuses_batches_larger_than_the_model_takes(spark, model_dir, fixture_data):
    "With Spark's default of 10,000 rows per Arrow batch the model would refuse every call: refused before the job, saying what to set."
    from fruit360.spark import ARROW_BATCH, classify_images, read_images
    before = spark.conf.get(ARROW_BATCH)
    spark.conf.set(ARROW_BATCH, '10000')
    try:
        with pytest.raises(ValueError, match=f"spark.conf.set\\('{ARROW_BATCH}', 64\\)"):
            classify_images(read_images(spark, str(fixture_data/'Test')), model_dir)
    finally: spark.conf.set(ARROW_BATCH, before)
