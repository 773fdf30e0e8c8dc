"Random bodies, content types and JSON shapes sent to the real HTTP service: only 2xx and 4xx answers, and a live server after."
import base64, io, json, urllib.request
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image
from helpers import http_post


def image_b64(w: int, h: int, fmt: str) -> str:
    buf = io.BytesIO()
    Image.new('RGB', (w, h), 'red').save(buf, fmt)
    return base64.b64encode(buf.getvalue()).decode()


IMAGES = [image_b64(40, 30, 'PNG'), image_b64(120, 80, 'JPEG')]
CONTENT_TYPES = ['application/json', 'application/json; charset=utf-8', 'application/json; charset=latin-1',
                 'application/json; foo=bar', 'APPLICATION/JSON', 'text/csv', 'text/plain', 'application/vnd.apache.parquet',
                 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', '', None]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.sampled_from(IMAGES + ['%%%', '']),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30)
keys = st.sampled_from(['dataframe_split', 'dataframe_records', 'instances', 'inputs', 'params', 'columns', 'data', 'image', 'topk'])
shaped = st.fixed_dictionaries({}, optional={
    'dataframe_split': st.fixed_dictionaries({}, optional={
        'columns': st.lists(st.sampled_from(['image', 'photo', '']) | json_values, max_size=3),
        'data': st.lists(st.lists(st.sampled_from(IMAGES + ['%%%', 'QUJD']) | json_values, max_size=3), max_size=5),
        'index': json_values}),
    'dataframe_records': st.lists(st.dictionaries(st.sampled_from(['image', 'x']), st.sampled_from(IMAGES) | json_values, max_size=2), max_size=4),
    'instances': json_values, 'inputs': json_values,
    'params': st.dictionaries(st.sampled_from(['topk', 'x']), st.integers(-10**30, 10**30) | json_values, max_size=2)})
bodies = st.one_of(
    st.binary(max_size=3000),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(keys, json_values, max_size=3).map(lambda v: json.dumps(v).encode()),
    shaped.map(lambda v: json.dumps(v).encode()),
    st.tuples(shaped.map(lambda v: json.dumps(v).encode()), st.integers(0, 400)).map(lambda t: t[0][:t[1]]),  # cut short
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=bodies, ctype=st.sampled_from(CONTENT_TYPES) | header_text)
def test_random_requests_get_only_2xx_or_4xx(server, body, ctype):
    url, proc = server
    status, answer = http_post(f'{url}/invocations', body, {} if ctype is None else {'Content-Type': ctype})
    assert 200 <= status < 300 or 400 <= status < 500, (status, answer[:500])
    if status >= 400: assert len(answer) < 1000 and b'Traceback' not in answer, answer[:500]


def test_the_server_is_alive_after_the_fuzzing(server):
    url, proc = server
    assert proc.poll() is None
    for endpoint in ('ping', 'health', 'version'):  # MLflow's endpoints, as `mlflow models serve` has them
        with urllib.request.urlopen(f'{url}/{endpoint}', timeout=10) as r: assert r.status == 200
    body = json.dumps({'dataframe_split': {'columns': ['image'], 'data': [[IMAGES[0]]]}}).encode()
    status, answer = http_post(f'{url}/invocations', body, {'Content-Type': 'application/json'})
    assert status == 200 and len(json.loads(answer)['predictions']) == 1
