"""The documentation site (`make docs`): built from a clean copy of the repository as a fresh clone would be, within a
minute, one page per chapter with its API reference, no hidden cells, every plot shown and every link resolving."""
import ast, importlib, json, re, shutil, subprocess, sys, time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).parents[1]
_BUILT = {}


def build_site(tmp_path_factory) -> dict:
    "Build the site once per session, from the files git would check out (ignored outputs left behind)."
    if not _BUILT:
        clone = tmp_path_factory.mktemp('clone')/'fruit360'
        ls = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split('\0')
        for f in filter(None, ls):
            if (ROOT/f).is_file():
                (clone/f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT/f, clone/f)
        t = time.perf_counter()
        run = subprocess.run([sys.executable, 'tools/build_docs.py', '--out', '_site'], cwd=clone,
                             capture_output=True, text=True, timeout=600)
        _BUILT.update(clone=clone, site=clone/'_site', run=run, seconds=time.perf_counter() - t)
        print(f'docs built in {_BUILT["seconds"]:.1f} s:\n{run.stdout}')
    assert _BUILT['run'].returncode == 0, _BUILT['run'].stdout + _BUILT['run'].stderr
    return _BUILT


@pytest.fixture(scope='module')
def built(tmp_path_factory): return build_site(tmp_path_factory)


def chapters(clone:Path) -> list[tuple[str, str, Path]]:
    "Each chapter's page name, title (the notebook's H1) and notebook, in reading order."
    from nbdev.config import nbpath2html
    nbs = [clone/'nbs'/'index.ipynb', *sorted((clone/'nbs').glob('[0-9]*.ipynb'))]
    def h1(nb):
        cells = json.loads(nb.read_text())['cells']
        src = next(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown' and ''.join(c['source']).startswith('# '))
        return src.splitlines()[0][2:].strip()
    return [(nbpath2html(nb.name).name, h1(nb), nb) for nb in nbs]


def code_cells(nb:Path, hidden:bool) -> list[str]:
    "The sources of a notebook's code cells marked `#| hide` (or of those not marked)."
    cells = [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
    return [s for s in cells if bool(re.search(r'^#\|\s*hide\s*$', s, re.M)) == hidden]


def soup(path:Path) -> BeautifulSoup: return BeautifulSoup(path.read_text(encoding='utf-8'), 'html.parser')


def modidx(clone:Path) -> dict:
    "nbdev's index of the package's symbols: name -> (page.html#anchor, module file)."
    mods = ast.literal_eval((clone/'fruit360'/'_modidx.py').read_text().split('=', 1)[1])['syms']
    return {sym: v for syms in mods.values() for sym, v in syms.items()}


def test_build_is_fast_and_complete(built):
    "A fresh build takes under a minute and writes every chapter's page and its Markdown twin."
    print(f'build time {built["seconds"]:.1f} s')
    assert built['seconds'] < 60
    for name, title, nb in chapters(built['clone']):
        assert (built['site']/name).is_file() and (built['site']/f'{name}.md').is_file(), nb


def test_one_page_per_chapter_in_notebook_order(built):
    "The navigation lists the index, then every numbered notebook in order, each titled by its H1."
    nav = soup(built['site']/'index.html').select_one('nav.md-nav--primary > ul')
    links = [(a['href'], a.get_text(' ', strip=True)) for a in nav.select(':scope > li > a.md-nav__link')]
    assert links == [(name, title) for name, title, _ in chapters(built['clone'])]


def test_every_public_export_has_a_heading_and_signature(built):
    "Every public function and class of the package has a heading on its chapter's page, with its signature."
    for sym, (url, _) in modidx(built['clone']).items():
        name = sym.rsplit('.', 1)[1]
        if name.startswith('_') or sym.count('.') > 2: continue  # private, or a method
        page, anchor = url.split('#')
        h = soup(built['site']/page).find(id=anchor)
        assert h is not None and h.name in ('h2', 'h3', 'h4'), f'{sym}: no heading #{anchor} in {page}'
        sig = h.find_next('pre')
        assert sig is not None and re.search(rf'(def|class) {re.escape(name)}\b', sig.get_text()), f'{sym}: no signature'


def test_predict_has_its_parameters_table(built):
    "`predict` shows its signature, its docstring and a table with a row per parameter and its docment."
    from inspect import signature
    sys.path.insert(0, str(built['clone']))
    try: predict = importlib.import_module('fruit360.infer').predict
    finally: sys.path.remove(str(built['clone']))
    page, anchor = modidx(built['clone'])['fruit360.infer.predict'][0].split('#')
    h = soup(built['site']/page).find(id=anchor)
    assert 'def predict(' in h.find_next('pre').get_text()
    assert predict.__doc__.replace('`', '') in h.find_next('p').get_text()
    rows = {r.find('td').get_text(strip=True): r.get_text(' ', strip=True) for r in h.find_next('table').select('tbody tr')}
    for p in signature(predict).parameters: assert p in rows, p
    assert 'HxWx3 uint8 array' in rows['img']


def test_hidden_cells_are_not_shown(built):
    "Lines that only `#| hide` cells hold appear on no page; the exported code's cells are replaced by show_doc."
    checked = 0
    for name, _, nb in chapters(built['clone']):
        text = (built['site']/f'{name}.md').read_text()
        shown = '\n'.join(code_cells(nb, hidden=False))
        for src in code_cells(nb, hidden=True):
            for line in src.splitlines()[1:]:
                if line.strip() and line not in shown:
                    assert line not in text, f'{nb.name}: hidden line {line!r} is on {name}'
                    checked += 1
    assert checked >= 5


def test_plots_and_figures_are_shown(built):
    "Every image a notebook shows (outputs and the committed plots it refers to) is an image on its page."
    for name, _, nb in chapters(built['clone']):
        cells = json.loads(nb.read_text())['cells']
        outputs = sum(1 for c in cells if c['cell_type'] == 'code' and not re.search(r'^#\|\s*hide', ''.join(c['source']), re.M)
                      for o in c.get('outputs', []) if any(k.startswith('image/') for k in o.get('data', {})))
        refs = [m for c in cells if c['cell_type'] == 'markdown' for m in re.findall(r'!\[[^\]]*\]\(([^)\s]+)', ''.join(c['source']))]
        srcs = [img['src'] for img in soup(built['site']/name).select('article img')]
        assert len(srcs) >= outputs + len(refs), f'{name}: {srcs}'
        for r in refs: assert r in srcs, f'{name}: {r} not shown'
    assert (built['site']/'plots'/'custom_cnn_curves.png').stat().st_size > 1000


class _Refs(HTMLParser):
    "The ids a page defines and the URLs it refers to."
    def __init__(self):
        super().__init__()
        self.ids, self.refs = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        self.refs += [a[k] for k in ('href', 'src') if a.get(k)]


def broken_links(site:Path, base:str='/') -> list[str]:
    "Every internal link and image of every page that does not resolve to a file (or to an id on its page)."
    # `base`: the site's path when published; the 404 page links absolutely as it is served for any path
    pages = {}
    for f in site.rglob('*.html'):
        p = _Refs(); p.feed(f.read_text(encoding='utf-8')); pages[f.resolve()] = p
    bad = []
    for f, p in pages.items():
        for ref in p.refs:
            u = urlsplit(ref)
            if u.scheme or u.netloc: continue  # external: not fetched
            path = unquote(u.path)
            if path.startswith('/'): path = str(site/path.removeprefix(base.rstrip('/')).lstrip('/'))
            target = (f.parent/path).resolve() if path else f
            if target.is_dir(): target = target/'index.html'
            if not target.is_file() or not target.is_relative_to(site.resolve()): bad.append(f'{f.name}: {ref}')
            elif u.fragment and target in pages and unquote(u.fragment) not in pages[target].ids: bad.append(f'{f.name}: {ref} (no such id)')
    return bad


def test_every_internal_link_and_image_resolves(built):
    "The link checker finds no broken internal link, image, script or stylesheet in the built HTML."
    assert len(list(built['site'].rglob('*.html'))) >= len(chapters(built['clone']))
    from nbdev.config import get_config
    assert broken_links(built['site'], urlsplit(get_config(built['clone']).doc_url).path) == []


def test_link_checker_finds_a_broken_link(tmp_path):
    "The checker itself reports a missing page, a missing image and a missing anchor."
    (tmp_path/'a.html').write_text('<h2 id="x">x</h2><a href="a.html#x">ok</a><a href="b.html">b</a><img src="p.png">'
                                   '<a href="#y">y</a><a href="https://example.org/">ext</a><a href="/s/a.html">abs</a>'
                                   '<a href="/s/c.html">c</a>')
    assert broken_links(tmp_path, '/s/') == ['a.html: b.html', 'a.html: p.png', 'a.html: #y (no such id)', 'a.html: /s/c.html']


def test_docstring_links_point_at_built_pages(built):
    "Each module's `Docs:` link and each README link into the site is the published URL of a page that was built."
    from nbdev.config import get_config
    doc_url = get_config(built['clone']).doc_url
    mods = [f for f in (built['clone']/'fruit360').glob('*.py') if not f.name.startswith('_')]
    links = [re.search(r'^Docs: ([^\s"]+)', f.read_text(), re.M)[1] for f in mods]
    links += re.findall(re.escape(doc_url) + r'[^\s)"]*', (built['clone']/'README.md').read_text())
    assert len(links) >= len(mods) > 0
    for url in links:
        assert url.startswith(doc_url), url
        assert (built['site']/(url.removeprefix(doc_url).split('#')[0] or 'index.html')).is_file(), url


def test_refuses_to_replace_a_folder_it_did_not_build(tmp_path):
    "MkDocs empties its site folder, so the script refuses a non-empty folder it did not make, and touches nothing."
    (tmp_path/'notes.txt').write_text('mine')
    run = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--out', str(tmp_path)], capture_output=True, text=True)
    assert run.returncode != 0 and 'was not built by this script' in run.stderr
    assert (tmp_path/'notes.txt').read_text() == 'mine'
