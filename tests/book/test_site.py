"""Site check: build the smoke book into a temporary project and look at every toc page as a reader would.

Needs Debian's `chromium` for the screenshots (`make browser` installs it); screenshots land in
`<artifacts>/site-check/` to be looked at.
"""

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from residual_lib.book import layout as book_layout, provenance
from residual_lib.paths import artifacts_dir

pytestmark = [pytest.mark.slow, pytest.mark.site]
ERROR_MARKERS = ('class="output traceback', "Traceback (most recent call last)", "papermill-error-cell")


class Images(HTMLParser):
    """Collects the src of every <img> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


@pytest.fixture(scope="module")
def site(smoke_book) -> Path:
    """Root of the smoke book that tests/conftest.py builds once a session for every test that reads it."""
    return smoke_book


def pages(root: Path) -> list[str]:
    return book_layout.toc_files(root / "book" / "_toc.yml")


def html_of(root: Path, page: str) -> Path:
    return root / "book" / "_build" / "html" / f"{page}.html"


def test_every_toc_page_is_built(site):
    missing = [page for page in pages(site) if not html_of(site, page).is_file()]
    assert not missing, f"toc pages without HTML: {missing}"


def test_every_image_is_a_nonempty_local_picture(site):
    from PIL import Image

    broken = []
    for page in pages(site):
        parser = Images()
        parser.feed(html_of(site, page).read_text())
        for src in parser.sources:
            url = urlparse(src)
            if url.scheme == "data":
                continue
            path = (html_of(site, page).parent / unquote(url.path)).resolve()
            if url.scheme or not path.is_file() or path.stat().st_size == 0:
                broken.append(f"{page}: {src}")
            elif path.suffix.lower() == ".png":
                with Image.open(path) as img:
                    img.verify()
    assert not broken, f"images that do not load offline: {broken}"


def test_no_page_shows_an_execution_error(site):
    shown = [f"{page}: {marker}" for page in pages(site) for marker in ERROR_MARKERS
             if marker in html_of(site, page).read_text()]
    assert not shown, f"executed cells show errors: {shown}"


def test_every_notebook_page_has_a_complete_provenance_block(site):
    for page in [p for p in pages(site) if p.startswith("notebooks/")]:
        text = html_of(site, page).read_text()
        assert "residual-provenance" in text, f"{page} has no provenance block"
        assert "Profile</th><td>smoke" in text and provenance.NOT_MEASURED not in text, f"{page}: incomplete block"


def test_pages_render_in_headless_chromium(site, tmp_path):
    """Every page in one browser session (a browser start per page and check took a second each, 28 in all): its
    first 1280 x 2000 pixels as a screenshot to look at, and its DOM after loading, with a title and no error."""
    from browser import Browser, chromium

    if chromium() is None:
        pytest.skip("headless browser missing: install Debian's 'chromium' package (apt-get install chromium, "
                    "or `make browser`)")
    shots = artifacts_dir() / "site-check"
    shots.mkdir(parents=True, exist_ok=True)
    with Browser(tmp_path / "profile", width=1280, height=2000) as browser:
        for page in pages(site):
            png = shots / f"{page.replace('/', '_')}.png"
            png.unlink(missing_ok=True)
            browser.open(html_of(site, page).as_uri())
            browser.screenshot(png, full_page=False)
            assert png.is_file() and png.stat().st_size > 10_000, f"no screenshot of {page}"
            dom = browser.eval("document.documentElement.outerHTML")
            assert "<h1>" in dom and not any(m in dom for m in ERROR_MARKERS), f"{page} renders wrong"


# What a reader sees broken in a page's tables, measured in the browser's layout (rendering checks of issue 27).
LAYOUT_PROBLEMS = r"""(() => {
  const problems = [];
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  // How far right a table shows: up to the first ancestor that scrolls (then all of it can be seen), else up to
  // the nearest edge that clips it (an ancestor hiding its overflow, the article's column, the window).
  const visibleRight = (el) => {
    let right = Math.min(article.getBoundingClientRect().right, document.documentElement.clientWidth);
    for (let e = el.parentElement; e && e !== document.body; e = e.parentElement) {
      const overflow = getComputedStyle(e).overflowX;
      if (overflow === 'auto' || overflow === 'scroll') return Infinity;
      if (overflow === 'hidden' || overflow === 'clip') right = Math.min(right, e.getBoundingClientRect().right);
    }
    return right;
  };
  [...article.querySelectorAll('table')].forEach((t, i) => {
    const box = t.getBoundingClientRect();
    if (box.width === 0) return;  // in a collapsed block
    const name = (t.caption ? t.caption.textContent.trim().slice(0, 70) : `table ${i + 1}`);
    const right = visibleRight(t);
    if (box.right > right + 1)
      problems.push(`clipped: ${Math.round(box.right - right)} px hidden past the column's edge: ${name}`);
    for (const cell of t.querySelectorAll('td')) {
      const row = cell.parentElement.rowIndex;
      if (!cell.textContent.trim() && !cell.querySelector('img, svg'))
        problems.push(`empty cell (row ${row}, column ${cell.cellIndex + 1}) without a stated reason: ${name}`);
      const texts = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
      for (let node = texts.nextNode(); node; node = texts.nextNode()) {
        // a word is a run of letters and digits: a code name may wrap at its dots and underscores
        for (const word of node.data.matchAll(/[\p{L}\p{N}]+/gu)) {
          const range = document.createRange();
          range.setStart(node, word.index);
          range.setEnd(node, word.index + word[0].length);
          const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
          if (lines.size > 1) problems.push(`word "${word[0]}" broken over ${lines.size} lines (row ${row}): ${name}`);
        }
      }
    }
  });
  return problems;
})()"""


def page_layout_problems(browser, html: Path) -> list[str]:
    """Tables of one built page that are clipped, break words or leave a cell blank, in an open browser session."""
    browser.open(html.as_uri())
    return browser.eval(LAYOUT_PROBLEMS)


def test_tables_scroll_rather_than_clip_keep_words_whole_and_leave_no_cell_blank(site, tmp_path):
    from browser import Browser, chromium

    if chromium() is None:
        pytest.skip("headless browser missing: install Debian's 'chromium' package (apt-get install chromium)")
    with Browser(tmp_path / "p", width=1400, height=1200) as b:  # one session for every page
        problems = {page: found for page in pages(site) if (found := page_layout_problems(b, html_of(site, page)))}
    assert not problems, "\n".join(f"{page}: {p}" for page, found in problems.items() for p in found)
