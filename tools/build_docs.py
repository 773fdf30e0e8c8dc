"""Build fruit360's documentation site without Quarto: nbdev processes the notebooks, MkDocs Material renders them.

`make docs` runs this into `_site/` and `make docs-serve` serves it; people with Quarto can still run `nbdev-docs`.
Each chapter (nbs/index.ipynb, then nbs/[0-9]*.ipynb in order) goes through nbdev's own processors (hidden cells
dropped, a `show_doc` after every export), becomes Markdown via nbconvert, and is written as `NAME.html` by MkDocs
plus `NAME.html.md`, the page names nbdev gives (`nbpath2html`) and that the module docstrings link to."""
import argparse, ast, json, logging, re, shutil, sys, tempfile, time
from functools import partial
from importlib import import_module
from inspect import getsourcelines, unwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = '.fruit360-site'  # a folder holding this file was made by this script, so a rebuild may replace it


def chapters(nbs:Path) -> list[Path]:
    "The notebooks that make the site, in reading order: the index, then the numbered chapters sorted."
    return [nbs/'index.ipynb', *sorted(nbs.glob('[0-9]*.ipynb'))]


def _lineno(sym) -> int|None:
    "The line where `sym` is defined in its module's file (the exported code, not the notebook's cell), or None."
    obj = sys.modules.get(getattr(sym, '__module__', None) or '')
    for part in (getattr(sym, '__qualname__', None) or '?').split('.'): obj = getattr(obj, part, None)
    try: return getsourcelines(unwrap(obj))[1]
    except (OSError, TypeError): return None


def _anchor(fullname:str, nm:str) -> str:
    "The anchor nbdev's links use for a symbol (from the project's `_modidx`), so the heading carries that id."
    from nbdev.doclinks import NbdevLookup
    url = NbdevLookup().doc(fullname) or ''
    return url.partition('#')[2] or nm.lower()


def _renderer():
    "nbdev's `show_doc` Markdown plus fastcore's docments table of the parameters."
    from fastcore.docments import DocmentTbl, DocmentText
    from nbdev.showdoc import BasicMarkdownRenderer

    class DocsRenderer(BasicMarkdownRenderer):
        "Signature, docstring and parameters table; the source link gets the line number nbdev leaves out."
        def _repr_markdown_(self):
            try: tbl = DocmentTbl(self.sym)
            except Exception: tbl = None  # a builtin or a class without a signature: nothing to tabulate
            if tbl is not None and tbl.has_docment and isinstance(self.dm, DocmentText):
                for d in self.dm.dm.values(): d['docment'] = None  # in the table, not repeated as signature comments
            h = '#' * self.title_level
            line = _lineno(self.sym)
            md = super()._repr_markdown_().replace('#LNone', f'#L{line}' if line else '')
            md = md.replace(f'{h} {self.nm}\n', f'{h} {self.nm} {{#{_anchor(self.fn, self.nm)}}}\n', 1)
            return md + (f'\n\n{tbl._repr_markdown_()}\n' if tbl is not None and tbl.has_docment else '')
    return DocsRenderer


def _procs():
    "nbdev's docs processors, with `show_doc` rendered in the module's namespace instead of an IPython run of the notebook."
    from fastcore.xtras import dict2obj
    from nbdev.config import get_config
    from nbdev.process import Processor
    from nbdev.processors import FilterDefaults, exec_show_docs, _show_docs
    from nbdev.showdoc import show_doc
    lib, render = get_config().lib_path.name, partial(show_doc, renderer=_renderer())

    class show_docs_from_module(Processor):
        "Run the exported cells in the module's namespace, as nbdev does, and render each `show_doc` cell there."
        def begin(self):
            mod = next((c.directives_['default_exp'].split()[0] for c in self.nb.cells
                        if 'default_exp' in getattr(c, 'directives_', {})), None)
            self.ns = {**(vars(import_module(f'{lib}.{mod}')) if mod else {'__name__': '__main__'}), 'show_doc': render}
        def _fail(self, cell, what, e):
            raise RuntimeError(f'{self.nb.path_}, cell {cell.idx_}: {what} failed ({type(e).__name__}: {e})') from e
        def __call__(self, cell):
            if cell.cell_type != 'code' or not cell.source: return
            if {'export', 'exports', 'exporti'} & set(cell.directives_):
                try: exec(compile(cell.source, f'{self.nb.path_} cell {cell.idx_}', 'exec'), self.ns)
                except Exception as e: self._fail(cell, 'running the exported code', e)
            if not re.search(r'^show_doc', cell.source, re.M): return
            mds = []
            for t in _show_docs(ast.parse(cell.source).body):
                try: mds.append(eval(compile(ast.Expression(t.value), '<show_doc>', 'eval'), self.ns)._repr_markdown_())
                except Exception as e: self._fail(cell, f'`{ast.unparse(t)}`', e)
            cell.outputs = [dict2obj(dict(output_type='display_data', metadata={}, data={'text/markdown': md})) for md in mds]

    class Procs(FilterDefaults):
        def base_procs(self): return [show_docs_from_module if p is exec_show_docs else p for p in super().base_procs()]
    return Procs()


_re_opt = re.compile(r'^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')

def _quarto_options(cell) -> bool:
    "Apply the Quarto options nbdev leaves in a cell (echo, output, include) and drop their lines; False: drop the cell."
    if cell.cell_type != 'code': return True
    lines, opts = cell.source.splitlines(), {}
    while lines and (m := _re_opt.match(lines[0])): opts[m[1]] = m[2].strip('"\'').lower(); lines.pop(0)
    cell.source = '\n'.join(lines)
    if opts.get('output') == 'false': cell.outputs = []
    if opts.get('echo') == 'false': cell.metadata.setdefault('tags', []).append('remove_input')
    return opts.get('include') != 'false' and bool(cell.source.strip() or cell.get('outputs'))


def site_links(md:str, doc_url:str, ext:str) -> str:
    "Links to the published site (`doc_url`, from pyproject) made relative: `PAGE.html#x` becomes `PAGE{ext}#x`."
    pre = re.escape(doc_url.rstrip('/') + '/')
    md = re.sub(pre + r'([\w/-]+)\.html(?:\.md)?(?=[#)"\s])', lambda m: m[1] + ext, md)
    return re.sub(pre + r'(?=[)"\s])', 'index' + ext, md)


def page(nb_path:Path, doc_url:str) -> dict:
    "One chapter: its title, page name, Markdown for MkDocs (links to `.md`) and output files."
    from fastcore.nbio import nb2dict, read_nb
    from nbconvert import MarkdownExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    import nbformat
    nb = read_nb(nb_path)
    _procs()(nb)
    fm = getattr(nb, 'frontmatter_', {})
    name = Path(fm.get('output-file') or f'{nb_path.stem}.html').stem
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'raw' and c.source.startswith('---')) and _quarto_options(c)]
    exp = MarkdownExporter()
    exp.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'remove_input'}), enabled=True)
    d = nb2dict(nb)
    d['metadata'].setdefault('language_info', {'name': 'python'})  # nbdev-clean strips it; it names the code fences
    for c in d['cells']: c.pop('has_sd', None)  # nbdev's mark on the cells it added, not part of the format
    body, res = exp.from_notebook_node(nbformat.reads(json.dumps(d), as_version=4),
                                       resources={'output_files_dir': f'{name}_files', 'unique_key': name})
    title = fm.get('title') or name
    head = f'# {title}\n\n' + (f'> {fm["description"]}\n\n' if fm.get('description') else '')
    return dict(title=title, name=name, md=head + body, files=res.get('outputs', {}), nb=nb_path)


_re_target = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)|\b(?:src|href)="([^"]+)"')

_re_symlink = re.compile(r'\[(`[^`\]]+`)\]\(([\w/-]+\.md)#([^)\s]+)\)')

def unlink_undocumented(md:str, anchors:dict[str, set]) -> str:
    "nbdev links every indexed name, private ones too; a link to a symbol with no `show_doc` heading stays plain code."
    return _re_symlink.sub(lambda m: m[0] if m[3] in anchors.get(m[2], ()) else m[1], md)


def copy_assets(md:str, src_dirs:list[Path], docs:Path):
    "Copy the repository files a page refers to by a relative path (the committed plots) into the site source."
    for m in _re_target.finditer(md):
        t = (m[1] or m[2]).split('#')[0]
        if not t or re.match(r'^[a-z][a-z0-9+.-]*:|^/|^\.\.', t) or t.endswith('.md') or (docs/t).exists(): continue
        for d in src_dirs:
            f = (d/t).resolve()
            if f.is_file() and f.is_relative_to(ROOT):
                (docs/t).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, docs/t)
                break


def _check_out(out:Path):
    "Refuse to build into a folder this script did not make: MkDocs empties its site folder first."
    if out.resolve() in (ROOT, *ROOT.parents) or (out.exists() and any(out.iterdir()) and not (out/MARKER).exists()):
        sys.exit(f'build_docs: {out} is not empty and was not built by this script; give an empty or new folder with --out')


def build(out:Path, # the site folder (created; a previous build there is replaced)
          nbs:Path=ROOT/'nbs', # the notebooks
         ) -> list[dict]:
    "Build the site from the notebooks in `nbs` into `out`; the pages in navigation order."
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config
    from nbdev.config import get_config
    _check_out(out)
    cfg = get_config(ROOT)
    doc_url = cfg.doc_url or f'{cfg.doc_host}{cfg.doc_baseurl}/'
    with tempfile.TemporaryDirectory(prefix='fruit360-docs-') as tmp:
        docs = Path(tmp)
        pages = [page(nb, doc_url) for nb in chapters(nbs)]
        for p in pages: p['md'] = site_links(p['md'], doc_url, '.md')
        anchors = {f'{p["name"]}.md': set(re.findall(r'^#+ .*\{#([^ }]+)\}\s*$', p['md'], re.M)) for p in pages}
        for p in pages:
            md = p['md'] = unlink_undocumented(p['md'], anchors)
            (docs/f'{p["name"]}.md').write_text(md, encoding='utf-8')
            for f, data in p['files'].items(): (docs/f).parent.mkdir(parents=True, exist_ok=True); (docs/f).write_bytes(data)
            copy_assets(md, [nbs, ROOT], docs)
        mk = load_config(str(ROOT/'mkdocs.yml'), docs_dir=str(docs), site_dir=str(out.resolve()), strict=True,
                         site_name=cfg.title, site_description=cfg.description, site_url=doc_url,
                         nav=[{p['title']: f'{p["name"]}.md'} for p in pages])
        mkdocs_build(mk)
    to_html = re.compile(r'\]\((%s)\.md(?=[#)])' % '|'.join(re.escape(p['name']) for p in pages))
    for p in pages:  # the Markdown twin of each page, which nbdev's docstring links (`Docs: ....html.md`) point at
        (out/f'{p["name"]}.html.md').write_text(to_html.sub(r'](\1.html', p['md']), encoding='utf-8')
    (out/MARKER).write_text('built by tools/build_docs.py\n')
    return pages


def main():
    "Command line: build the site and print its pages and the time it took."
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=ROOT/'_site', help='site folder (default: _site)')
    args = ap.parse_args()
    out = args.out.resolve()
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    sys.path.insert(0, str(ROOT))  # document the package in this tree
    import os; os.chdir(ROOT)  # nbdev reads its settings from the project's pyproject.toml
    t = time.perf_counter()
    from mkdocs.exceptions import Abort
    try: pages = build(out)
    except (Abort, RuntimeError) as e: sys.exit(f'build_docs: {e}')
    for p in pages: print(f'{p["name"]}.html  {p["title"]}  ({p["nb"].name})')
    print(f'built {len(pages)} pages into {out} in {time.perf_counter() - t:.1f} s')


if __name__ == '__main__': main()
