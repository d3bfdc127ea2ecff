"""``rlmorning html``: the page, opened from file:// in a real headless Chromium driven by Playwright.

The browser is Debian's Chromium (``apt-get install chromium``; ``.ci/run`` installs it), never a Playwright
download. A missing browser or Playwright fails these tests: they are not skipped. ``RLMORNING_CHROMIUM``
overrides the browser path; ``RLMORNING_SCREENSHOT=PATH`` also copies the page's screenshot to PATH
(``RLMORNING_SCREENSHOT=docs/html_report.png`` made the one in the docs).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlmorning import api
from rlmorning.cli import main

CHROMIUM = os.environ.get("RLMORNING_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# a ~200-step Breakout run that evaluates twice (steps 100 and 200) and logs every 50 steps
BREAKOUT = [
    "learning_starts=100", "buffer_size=2000", "eval_every=100", "eval_episodes=1", "eval_max_frames=1000",
    "heldout_states=20", "checkpoint_every=200", "log_every=50", "batch_size=8", "torch_threads=1",
]
EPISODE_STEPS = 120
LOCAL_SCHEMES = ("file:", "data:", "blob:")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("html")
    out = []
    for seed in (0, 1):
        run = root / f"breakout-{seed}"
        api.train("dqn", "Breakout", run_dir=run, steps=200, seed=seed, progress=False, overrides=BREAKOUT)
        out.append(run)
    return out


@pytest.fixture(scope="module")
def page_path(runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("page") / "report.html"
    assert main(["html", *map(str, runs), "--out", str(out), "--max-steps", str(EPISODE_STEPS)]) == 0
    return out


def sidecar_of(page: Path) -> dict[str, Any]:
    """The episode data inlined in the page (the recorder's sidecar)."""
    text = page.read_text(encoding="utf-8")
    start = text.index('<script type="application/json" id="page-data">') + len(
        '<script type="application/json" id="page-data">')
    return json.loads(text[start:text.index("</script>", start)])["episode"]["sidecar"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed (pip install -e '.[dev]')")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set RLMORNING_CHROMIUM)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Opened:
    """A page opened from file:// with its console errors, page errors and every requested URL."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url[:120]}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function("() => window.Plotly && [...document.querySelectorAll('.js-plotly-plot')]"
                                    ".length >= 1", timeout=30_000)

    def remote(self) -> list[str]:
        return [u[:120] for u in self.requests if not u.startswith(LOCAL_SCHEMES)]

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def opened(browser: Any, page_path: Path) -> Iterator[Opened]:
    """The page, opened once for the tests that only look at it (parsing 4.8 MB of plotly.js takes seconds)."""
    o = Opened(browser, page_path)
    yield o
    o.close()


def play(o: Opened) -> dict[str, float]:
    """Play the (muted) video until its time advances; returns readyState and currentTime."""
    return o.page.evaluate("""async () => {
        const v = document.getElementById('video');
        v.muted = true;
        await v.play();
        const t0 = performance.now();
        while (v.currentTime <= 0.1 && performance.now() - t0 < 10000) await new Promise(r => setTimeout(r, 50));
        v.pause();
        return {readyState: v.readyState, currentTime: v.currentTime, error: v.error ? v.error.code : 0};
    }""")


def test_page_is_self_contained_and_the_video_plays(opened: Opened, page_path: Path) -> None:
    state = play(opened)
    assert state["error"] == 0 and state["readyState"] >= 2 and state["currentTime"] > 0.1, state
    plots = opened.page.evaluate("[...document.querySelectorAll('.js-plotly-plot')].map(d => d.id)")
    assert "qtrace" in plots and "curve-eval_return_mean" in plots and "curve-heldout_q" in plots, plots
    assert {"curve-loss", "curve-sps", "curve-epsilon"} <= set(plots), plots
    opened.page.wait_for_timeout(300)
    assert not opened.errors, opened.errors
    assert not opened.remote(), opened.remote()
    assert opened.requests and all(u.startswith(LOCAL_SCHEMES) for u in opened.requests)
    size = page_path.stat().st_size
    assert 3e6 < size < 12e6, size  # plotly.js (4.8 MB) + a short video + data


def test_curves_overlay_seeds_as_mean_and_band(opened: Opened, runs: list[Path]) -> None:
    traces = opened.page.evaluate("""() => document.getElementById('curve-eval_return_mean').data.map(
        t => ({name: t.name, fill: t.fill || null, n: t.x.length, hover: t.hovertemplate || ''}))""")
    names = [t["name"] for t in traces]
    assert any("2 seeds (0, 1): mean ± std" in n for n in names), names
    assert any(t["fill"] == "toself" for t in traces), traces  # the ± std band
    assert sum(f"(seed {s})" in n for n in names for s in (0, 1)) == 2, names  # thin per-seed lines
    title = opened.page.evaluate("document.getElementById('curve-eval_return_mean').layout.title.text")
    assert "eval protocol: true game score" in title
    cards = opened.page.inner_text("body")
    for run in runs:
        assert run.name in cards
    assert "best eval" in cards and "wall time" in cards and "gymnasium" in cards
    assert "agent: dqn" in opened.page.inner_text("details pre")  # the resolved config


def test_clicking_the_q_trace_seeks_the_video_and_fills_the_panel(opened: Opened, page_path: Path,
                                                                   tmp_path: Path) -> None:
    side = sidecar_of(page_path)
    assert 10 < side["steps"] <= EPISODE_STEPS and side["frames"] == side["steps"] + 1
    fps, per = side["fps"], side["per_step"]
    play(opened)  # decoded and playing once, as a person would have done
    step = min(77, side["steps"] - 2)
    opened.page.locator("#qtrace").scroll_into_view_if_needed()
    # the pixel of the point (step, Q(s_step, a_0)) of the first trace, from Plotly's axes
    x, y = opened.page.evaluate("""([k, q]) => {
        const gd = document.getElementById('qtrace'), fl = gd._fullLayout;
        const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
        return [r.left + fl.xaxis.l2p(k), r.top + fl.yaxis.l2p(q)];
    }""", [step, per["q_values"][step][0]])
    opened.page.mouse.move(x, y)
    opened.page.wait_for_timeout(100)
    opened.page.mouse.click(x, y)
    opened.page.wait_for_function(f"""() => {{ const v = document.getElementById('video');
        return !v.seeking && v.readyState >= 2 && document.getElementById('qpanel').dataset.step === '{step}'
            && Math.abs(v.currentTime - {step} / {fps}) <= 1 / {fps}; }}""", timeout=10_000)
    opened.page.wait_for_timeout(300)  # the frame callback after the seek must agree with the click
    current = opened.page.evaluate("document.getElementById('video').currentTime")
    assert abs(current - step / fps) <= 1 / fps, current
    assert opened.page.inner_text("#qp-step") == str(step)

    check_panel(opened, side, step)
    # test artifacts: the whole page, and its top (player, panel, Q trace, first curves) for the docs
    opened.page.screenshot(path=str(tmp_path / "html_report_full.png"), full_page=True)
    shot = tmp_path / "html_report.png"
    opened.page.evaluate("window.scrollTo(0, 0)")
    opened.page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1280, "height": 1560}, full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshots: {shot} and {tmp_path / 'html_report_full.png'}")
    if os.environ.get("RLMORNING_SCREENSHOT"):
        target = Path(os.environ["RLMORNING_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)

    opened.page.keyboard.press("ArrowRight")  # one frame on
    opened.page.wait_for_function(f"document.getElementById('qpanel').dataset.step === '{step + 1}'")
    check_panel(opened, side, step + 1)
    assert not opened.errors, opened.errors
    assert not opened.remote(), opened.remote()


def check_panel(o: Opened, side: dict[str, Any], step: int) -> None:
    """The Q panel shows the sidecar's numbers for ``step``: Q per action, action, reward, score, lives."""
    per = side["per_step"]
    cells = o.page.eval_on_selector_all("#qp-table tbody tr", """rows => rows.map(r => ({
        name: r.cells[0].textContent, text: r.querySelector('td.q').textContent,
        q: r.querySelector('td.q').dataset.q, chosen: r.classList.contains('chosen')}))""")
    assert [c["name"] for c in cells] == side["action_meanings"]
    for c, q in zip(cells, per["q_values"][step], strict=True):
        assert float(c["q"]) == q  # the exact number
        assert abs(float(c["text"]) - q) <= 5e-5, (c, q)  # shown to 4 decimals
    assert [i for i, c in enumerate(cells) if c["chosen"]] == [per["action"][step]]
    action = o.page.inner_text("#qp-action")
    assert action.startswith(side["action_meanings"][per["action"][step]])
    assert float(o.page.inner_text("#qp-reward")) == per["reward"][step]
    assert float(o.page.inner_text("#qp-score")) == per["score"][step]
    assert int(o.page.inner_text("#qp-lives")) == per["lives"][step]


def test_video_beside_the_page_and_an_existing_recording(browser: Any, runs: list[Path], page_path: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # an existing recording (--video) written into <stem>_files/ beside the page (--video-file)
    rec = tmp_path / "rec"
    assert main(["record", str(runs[1]), "--episodes", "1", "--max-steps", "30", "--out", str(rec)]) == 0
    mp4 = next(rec.glob("*.mp4"))
    out = tmp_path / "site" / "one.html"
    assert main(["html", str(runs[1]), "--out", str(out), "--video", str(mp4), "--video-file"]) == 0
    assert (out.parent / "one_files" / mp4.name).read_bytes() == mp4.read_bytes()
    assert out.stat().st_size < page_path.stat().st_size
    assert sidecar_of(out)["steps"] <= 30
    o = Opened(browser, out)
    try:
        state = play(o)
        assert state["error"] == 0 and state["readyState"] >= 2 and state["currentTime"] > 0.1, state
        assert any(u.endswith(f"one_files/{mp4.name}") and u.startswith("file:") for u in o.requests), o.requests
        assert not o.errors, o.errors
        assert not o.remote(), o.remote()
    finally:
        o.close()
    # curves and cards only
    bare = tmp_path / "bare.html"
    assert main(["html", str(runs[0]), "--out", str(bare), "--no-video"]) == 0
    assert 'id="video"' not in bare.read_text(encoding="utf-8")


def test_help_says_how_it_differs_from_report(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["html", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "rlmorning report" in out and "Markdown" in out and "--video" in out and "--out" in out


def test_bad_input_is_one_clear_line(runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def err(*args: object) -> str:
        assert main(["html", *map(str, args)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rlmorning: error: "), lines
        return lines[0]

    out = tmp_path / "x.html"
    file = tmp_path / "afile"
    file.write_text("x")
    no_metrics = tmp_path / "no-metrics"
    no_metrics.mkdir()
    shutil.copy(runs[0] / "config.yaml", no_metrics / "config.yaml")
    empty = tmp_path / "empty-metrics"
    empty.mkdir()
    shutil.copy(runs[0] / "config.yaml", empty / "config.yaml")
    (empty / "metrics.csv").write_text("step,loss\n")
    assert "is not a run directory" in err(tmp_path, "--out", out)
    assert "is not a run directory" in err(file, "--out", out)
    assert "does not exist" in err(tmp_path / "nope", "--out", out)
    assert "has no metrics.csv" in err(no_metrics, "--out", out)
    assert "has no metrics yet" in err(empty, "--out", out)
    assert "is a file, not a folder" in err(runs[0], "--out", file / "sub" / "x.html")
    assert "must be an .html file" in err(runs[0], "--out", tmp_path / "x.png")
    (tmp_path / "dir.html").mkdir()
    assert "is a folder" in err(runs[0], "--out", tmp_path / "dir.html")
    assert "does not exist" in err(runs[0], "--out", out, "--video", tmp_path / "none.mp4")
    mp4 = tmp_path / "lone.mp4"
    mp4.write_bytes(b"\0")
    assert "has no sidecar" in err(runs[0], "--out", out, "--video", mp4)
    mp4.with_suffix(".json").write_text("{}")
    assert "not a rlmorning record sidecar" in err(runs[0], "--out", out, "--video", mp4)
    assert "exclude each other" in err(runs[0], "--out", out, "--video", mp4, "--no-video")
    assert "--max-steps must be >= 1" in err(runs[0], "--out", out, "--max-steps", 0)
    assert not out.exists()
