"""``rlmorning html``: the page, opened from file:// in a real headless Chromium driven by Playwright.

The browser is Debian's Chromium (``apt-get install chromium``; ``.ci/run`` installs it), never a Playwright
download. A missing browser or Playwright fails these tests: they are not skipped. ``RLMORNING_CHROMIUM``
overrides the browser path; ``RLMORNING_SCREENSHOT=PATH`` also copies the page's screenshot to PATH
(``RLMORNING_SCREENSHOT=docs/html_report.png`` made the one in the docs).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
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
SALIENCY_STEPS = 16
LOCAL_SCHEMES = ("file:", "data:", "blob:")
# tiny runs whose cards get pictures: a world model (dream strip) and an NTM (memory plot), ~200 steps each
WORLD_MODEL = [
    "latent_dim=16", "codec_channels=8", "hidden=64", "codec=vae", "dynamics=gru", "context=1",
    "learning_starts=100", "train_freq=4", "batch_size=8", "seq_len=4", "kstep_every=100", "kstep_batch=16",
    "kstep_horizon=3", "log_every=100", "eval_every=200", "eval_episodes=1", "checkpoint_every=200", "torch_threads=1",
]
NTM = [
    "torch_threads=1", "num_envs=8", "memory_size=16", "memory_width=8", "controller_size=32", "batch_size=4",
    "env_kwargs.bits=4", "env_kwargs.max_length=3", "eval_episodes=2", "log_every=100", "eval_every=200",
    "checkpoint_every=200",
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, train_seeds: Callable) -> list[Path]:
    return train_seeds(tmp_path_factory.mktemp("html"), "Breakout", 200, BREAKOUT)


@pytest.fixture(scope="module")
def page_path(runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("page") / "report.html"
    assert main(["html", *map(str, runs), "--out", str(out), "--max-steps", str(EPISODE_STEPS)]) == 0
    return out


@pytest.fixture(scope="module")
def extras_page(runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A page of a Breakout run (its episode recorded with saliency), a world-model run and an NTM run."""
    root = tmp_path_factory.mktemp("extras")
    api.train("worldmodel", "MinAtar/Breakout", run_dir=root / "wm", steps=200, seed=0, progress=False,
              overrides=WORLD_MODEL)
    api.train("ntm", "rlmorning/NTMCopy-v0", run_dir=root / "ntm", steps=200, seed=0, progress=False, overrides=NTM)
    out = root / "extras.html"
    assert main(["html", str(runs[0]), str(root / "wm"), str(root / "ntm"), "--out", str(out), "--saliency",
                 "--max-steps", str(SALIENCY_STEPS)]) == 0
    return out


def sidecar_of(page: Path) -> dict[str, Any]:
    """The episode data inlined in the page (the recorder's sidecar; its Q-values unpacked from float32)."""
    text = page.read_text(encoding="utf-8")
    start = text.index('<script type="application/json" id="page-data">') + len(
        '<script type="application/json" id="page-data">')
    side = json.loads(text[start:text.index("</script>", start)])["episode"]["sidecar"]
    packed = side["per_step"].pop("q_values_f32")
    q = np.frombuffer(base64.b64decode(packed["b64"]), "<f4").reshape(packed["shape"])
    side["per_step"]["q_values"] = q.astype(np.float64).tolist()
    return side


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
    # the recorded video is the game screen only (Breakout at 3x): the page draws the Q panel itself
    side = sidecar_of(page_path)
    assert side["overlay"] is False and side["frame_size"] == [480, 630]
    assert opened.page.evaluate("[document.getElementById('video').videoWidth, "
                                "document.getElementById('video').videoHeight]") == [480, 630]
    # DQN runs and an episode without saliency: no toggle, no dream strip, no memory plot
    assert side["saliency"] is None
    absent = "#saliency-toggle, img.dream-strip, img.memory-plot"
    assert opened.page.evaluate(f"document.querySelectorAll({absent!r}).length") == 0


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
    # an existing recording with saliency (--video) written into <stem>_files/ beside the page (--video-file):
    # both videos (with and without the heatmap) go there, the page starts with the one without
    rec = tmp_path / "rec"
    assert main(["record", str(runs[1]), "--episodes", "1", "--max-steps", "30", "--out", str(rec), "--saliency",
                 "--saliency-every", "30"]) == 0
    mp4 = next(rec.glob("*-saliency.mp4"))
    off = mp4.with_name(mp4.stem + "-off.mp4")
    out = tmp_path / "site" / "one.html"
    assert main(["html", str(runs[1]), "--out", str(out), "--video", str(mp4), "--video-file"]) == 0
    for video in (mp4, off):
        assert (out.parent / "one_files" / video.name).read_bytes() == video.read_bytes()
    assert out.stat().st_size < page_path.stat().st_size
    side = json.loads(mp4.with_suffix(".json").read_text())
    assert side["overlay"] and side["steps"] == 30
    inlined = sidecar_of(out)
    del side["per_step"]["obs_sha1"]
    assert inlined["per_step"] == side["per_step"]  # Q-values packed as float32 and unpacked: the same numbers
    o = Opened(browser, out)
    try:
        state = play(o)
        assert state["error"] == 0 and state["readyState"] >= 2 and state["currentTime"] > 0.1, state
        assert any(u.endswith(f"one_files/{off.name}") and u.startswith("file:") for u in o.requests), o.requests
        assert o.page.locator("#saliency-toggle").get_attribute("data-src") == f"one_files/{mp4.name}"
        assert not o.errors, o.errors
        assert not o.remote(), o.remote()
    finally:
        o.close()
    # curves and cards only
    bare = tmp_path / "bare.html"
    assert main(["html", str(runs[0]), "--out", str(bare), "--no-video"]) == 0
    assert 'id="video"' not in bare.read_text(encoding="utf-8")


def frame_mean(o: Opened) -> float:
    """Mean RGB value of the game screen (the left 480 x 630 pixels) of the video's current frame."""
    return o.page.evaluate("""() => {
        const v = document.getElementById('video'), c = document.createElement('canvas');
        c.width = 160; c.height = 210;
        const g = c.getContext('2d');
        g.drawImage(v, 0, 0, 480, 630, 0, 0, 160, 210);
        const d = g.getImageData(0, 0, 160, 210).data;
        let s = 0;
        for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
        return s / (3 * d.length / 4);
    }""")


def settled(o: Opened, step: int, source: str) -> None:
    """Wait until the video shows ``source`` (plain or saliency) decoded at ``step`` and the panel agrees."""
    o.page.wait_for_function(f"""() => {{ const v = document.getElementById('video');
        return v.dataset.source === '{source}' && !v.seeking && v.readyState >= 2
            && document.getElementById('qpanel').dataset.step === '{step}'
            && Math.abs(v.currentTime - window.rlmStepTime({step})) < 1e-3; }}""", timeout=10_000)
    o.page.wait_for_timeout(200)


def test_saliency_toggle_switches_the_video_at_the_same_step(browser: Any, extras_page: Path) -> None:
    side = sidecar_of(extras_page)
    assert side["steps"] == SALIENCY_STEPS and side["saliency"]["steps"] == list(range(0, SALIENCY_STEPS + 1, 4))
    assert side["saliency"]["video_without"].endswith("-saliency-off.mp4")
    o = Opened(browser, extras_page)
    try:
        toggle = o.page.locator("#saliency-toggle")
        assert toggle.is_visible() and not toggle.is_checked()
        plain = o.page.evaluate("document.getElementById('video').getAttribute('src')")
        salient = toggle.get_attribute("data-src")
        assert plain.startswith("data:video/mp4;base64,") and salient.startswith("data:video/mp4;base64,")
        assert plain != salient
        step = 13
        o.page.evaluate(f"window.rlmSeek({step})")
        settled(o, step, "plain")
        before = frame_mean(o)
        toggle.click()  # on: the saliency video, still at the same step
        settled(o, step, "saliency")
        assert o.page.evaluate("document.getElementById('video').src") == salient
        assert o.page.evaluate("document.getElementById('video').paused")
        with_heatmap = frame_mean(o)
        assert abs(with_heatmap - before) > 1.0, (before, with_heatmap)  # the heatmap is drawn over the screen
        o.page.keyboard.press("ArrowRight")  # the keys still step the (switched) video
        settled(o, step + 1, "saliency")
        check_panel(o, side, step + 1)
        toggle.click()  # off again: the plain video at the same step
        settled(o, step + 1, "plain")
        assert o.page.evaluate("document.getElementById('video').getAttribute('src')") == plain
        assert not o.errors, o.errors
        assert not o.remote(), o.remote()
    finally:
        o.close()


def test_run_cards_show_the_dream_strip_and_the_memory_plot(browser: Any, extras_page: Path) -> None:
    from rlmorning.viz.html_report import DREAM_COLUMNS, DREAM_GAP, DREAM_HORIZON

    o = Opened(browser, extras_page)
    try:
        images = o.page.evaluate("""() => [...document.querySelectorAll('.card')].map(card => ({
            name: card.querySelector('h3').textContent,
            imgs: [...card.querySelectorAll('figure.extra img')].map(i => ({cls: i.className, w: i.naturalWidth,
                h: i.naturalHeight, shown: i.getBoundingClientRect().width, steps: i.dataset.steps || null,
                src: i.src})),
            captions: [...card.querySelectorAll('figcaption')].map(c => c.textContent)}))""")
        by_name = {c["name"]: c for c in images}
        assert [i["cls"] for i in by_name["wm"]["imgs"]] == ["dream-strip"]
        assert [i["cls"] for i in by_name["ntm"]["imgs"]] == ["memory-plot"]
        assert by_name["breakout-0"]["imgs"] == []  # a DQN without a world model or memory: no pictures
        for img in by_name["wm"]["imgs"] + by_name["ntm"]["imgs"]:
            assert img["w"] > 200 and img["h"] > 200 and img["shown"] > 100, img  # decoded and on screen
            assert img["src"].startswith("data:image/png;base64,")
        assert "open-loop dream" in by_name["wm"]["captions"][0] and "memory" in by_name["ntm"]["captions"][0]
        # the strip: frames of the dream video side by side, the first observed, at the steps it names
        strip = by_name["wm"]["imgs"][0]
        steps = [int(t) for t in strip["steps"].split(",")]
        assert steps[0] == 0 and steps == sorted(set(steps)) and steps[-1] <= DREAM_HORIZON
        assert 2 <= len(steps) <= DREAM_COLUMNS
        png = cv2.imdecode(np.frombuffer(base64.b64decode(strip["src"].split(",", 1)[1]), np.uint8),
                           cv2.IMREAD_COLOR)
        white = np.flatnonzero((png == 255).all(axis=(0, 2)))
        assert len(white) == DREAM_GAP * (len(steps) - 1), white  # the gaps between the frames, nothing else
        width = (png.shape[1] - len(white)) / len(steps)
        assert width == int(width) and png.shape[0] > width, png.shape  # equal frames, real/model/diff rows
        assert not o.errors, o.errors
        assert not o.remote(), o.remote()
    finally:
        o.close()


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
    assert "--saliency is for the recorded episode" in err(runs[0], "--out", out, "--video", mp4, "--saliency")
    assert "--video-panel is for the recorded" in err(runs[0], "--out", out, "--no-video", "--video-panel")
    mp4.with_suffix(".json").write_text(json.dumps({"fps": 30, "per_step": {"action": [0]},
                                                    "saliency": {"every": 4, "video_without": "gone.mp4"}}))
    assert "names 'gone.mp4' (the episode without saliency), which is not in" in err(runs[0], "--out", out,
                                                                                       "--video", mp4)
    assert "--max-steps must be >= 1" in err(runs[0], "--out", out, "--max-steps", 0)
    assert not out.exists()
