"""The painter and unit browser in Debian's Chromium against a real server on 127.0.0.1.

Runs on the embedded zoo model (world64) when it is installed, else on the tiny test zoo (then the
lamp test, which needs the world's concepts, is skipped).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from models.zoo import list_zoo
from tests.test_server_live import free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed"),
]

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": shutil.which("chromium"), "args": ARGS}


@pytest.fixture(scope="module")
def app_server(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    yield from _serve(tiny_zoo, tmp_path_factory)


@pytest.fixture(scope="module")
def token_server(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    # on every interface, so that it can also be reached under a second host name (127.0.0.2)
    # (sign-in rate: these tests sign in more often than a person would)
    yield from _serve(tiny_zoo, tmp_path_factory, {"GANPAINT_TOKEN": "browser-s3cret", "GANPAINT_LOGIN_PER_MINUTE": "600"},
                      host="0.0.0.0")


@pytest.fixture(scope="module")
def world128_server(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    """The shipped default model, which has a picture encoder (uploads need one)."""
    if "world128/encoder" not in list_zoo():
        pytest.skip("needs the world128 zoo model and its encoder")
    yield from _serve(tiny_zoo, tmp_path_factory, {"GANPAINT_INVERT_ADAPT_STEPS": "100"}, model="world128")


def _serve(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory, extra: dict[str, str] | None = None,
           host: str = "127.0.0.1", model: str = "world64"):
    world = model in list_zoo()
    port = free_port()
    env = {**os.environ, "GANPAINT_CACHE_DIR": str(tmp_path_factory.mktemp("browser-cache")), "OMP_NUM_THREADS": "2",
           **(extra or {})}
    if world:  # the small zoo model keeps the browser tests quick whatever the app's default is
        env.update(GANPAINT_DEFAULT_MODEL=model)
    else:
        env.update(GANPAINT_ZOO_DIR=str(tiny_zoo), GANPAINT_DEFAULT_MODEL="tiny", GANPAINT_SEGMENTER="tiny/segmenter",
                   GANPAINT_CLASSIFIER="tiny/classifier",
                   GANPAINT_DISSECT_SAMPLES="40", GANPAINT_CAUSAL_SAMPLES="4")
    # the server's output goes to a file: an unread pipe fills up and then blocks the server's logging
    log_path = tmp_path_factory.mktemp("browser-log") / "server.log"
    log_file = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--host", host, "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    auth = {"authorization": f"Bearer {extra['GANPAINT_TOKEN']}"} if extra and "GANPAINT_TOKEN" in extra else {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{base}/readyz", timeout=2, headers=auth)  # details only with the token
            if ready.status_code == 200 and all(t["status"] == "ready" for t in ready.json()["models"][0]["tables"].values()):
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log_path.read_text()
        time.sleep(0.5)
    model = model if world else "tiny"
    info = httpx.get(f"{base}/api/models/{model}", headers=auth).json()
    yield {"base": base, "model": model, "world": world, "resolution": info["resolution"], "log": log_path, "port": port}
    proc.terminate()
    proc.wait(20)
    log_file.close()


def open_painter(page, server: dict, path: str = "/"):
    page.goto(server["base"] + path)
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    wait_png(page, 0)
    return page


def shown_seq(page) -> int:
    return int(page.eval_on_selector("#image", "c => Number(c.dataset.seq || -1)"))


def wait_png(page, after: int) -> int:
    """Wait for a final (PNG) image newer than seq ``after``; returns its seq."""
    page.wait_for_function(
        "after => { const c = document.getElementById('image'); return c.dataset.format === 'png' && "
        "Number(c.dataset.seq) > after && Number(c.dataset.seq) >= Number(c.dataset.requested || 0); }",
        arg=after, timeout=20_000)
    return shown_seq(page)


def pixels(page) -> np.ndarray:
    data = page.evaluate("() => { const c = document.getElementById('image');"
                         " return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }")
    side = int(round((len(data) / 4) ** 0.5))
    return np.array(data, dtype=np.int32).reshape(side, side, 4)[..., :3]


def drag(page, x0: float, y0: float, x1: float, y1: float) -> None:
    """Drag between fractions of the canvas."""
    box = page.locator("#overlay").bounding_box()
    page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=12)
    page.mouse.up()


def choose_brush(page, server: dict) -> None:
    if server["world"]:
        page.get_by_role("button", name="brush tree").click()
    else:  # the tiny model has no detector units: paint with units, as from the unit browser
        page.goto(server["base"] + "/?model=tiny&units=0,1,2,3&name=test")
        page.wait_for_selector("body[data-ready=true]")
        wait_png(page, 0)


def test_paint_undo_redo(page, app_server: dict) -> None:
    open_painter(page, app_server)
    choose_brush(page, app_server)
    page.locator("#strength").fill("100")
    original = pixels(page)
    seq = shown_seq(page)
    drag(page, 0.1, 0.75, 0.4, 0.9)
    seq = wait_png(page, seq)
    edited = pixels(page)
    size = original.shape[0]
    diff = np.abs(edited - original).sum(-1)
    inside = diff[int(0.7 * size):int(0.95 * size), int(0.05 * size):int(0.45 * size)].mean()
    outside = diff[: int(0.3 * size), int(0.6 * size):].mean()
    assert inside > 10 and inside > 3 * outside
    assert page.locator("#history li").count() == 1
    page.keyboard.press("Control+z")
    seq = wait_png(page, seq)
    assert np.array_equal(pixels(page), original)
    page.keyboard.press("Control+Shift+z")
    seq = wait_png(page, seq)
    assert np.array_equal(pixels(page), edited)
    # toggling the stroke in the history off restores the original, on again the edit
    page.locator("#history li .name").first.click()
    seq = wait_png(page, seq)
    assert np.array_equal(pixels(page), original)


def test_brush_size_keys(page, app_server: dict) -> None:
    open_painter(page, app_server)
    start = int(page.locator("#brush-size").input_value())
    resolution = app_server["resolution"]
    grid = int(page.evaluate("() => document.getElementById('grid-hint').textContent.match(/(\\d+)×/)[1]"))
    assert start == round(2 * resolution / grid)  # the default brush covers about 2x2 edit cells
    page.locator("body").click(position={"x": 5, "y": 5})
    for _ in range(3):
        page.keyboard.press("]")
    assert int(page.locator("#brush-size").input_value()) == start + 3
    page.keyboard.press("[")
    size = start + 2
    assert int(page.locator("#brush-size").input_value()) == size
    # the size in generated-image pixels, as a share of the width and in edit-layer cells
    cells = size / (resolution / grid)
    assert page.locator("#brush-size-value").inner_text() == (
        f"{size} px · {round(100 * size / resolution)}% of width · {int(cells * 10 + 0.5) / 10:.1f} cells")
    hint = page.locator("#grid-hint").inner_text()
    assert f"1/{grid} of the image's width and height (1/{grid * grid} of its area)" in hint
    assert int(page.locator("#brush-size").get_attribute("max")) == max(8, resolution // 2)


def test_download_and_shared_url(page, context, app_server: dict) -> None:
    open_painter(page, app_server)
    choose_brush(page, app_server)
    seq = shown_seq(page)
    drag(page, 0.2, 0.6, 0.5, 0.8)
    wait_png(page, seq)
    edited = pixels(page)
    with page.expect_download() as info:
        page.get_by_role("button", name="download PNG").click()
    data = Path(info.value.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int32), edited)
    url = page.url
    assert "#r=" in url
    other = context.new_page()
    open_painter(other, app_server, url.split(app_server["base"], 1)[1])
    assert np.array_equal(pixels(other), edited)
    assert other.locator("#history li").count() == 1


def test_reconnect_after_the_socket_dies(page, app_server: dict) -> None:
    """The socket dies (a replica going away): the page says it is reconnecting, then sends its whole
    recipe again and shows the same painting; the next stroke paints on top."""
    open_painter(page, app_server)
    choose_brush(page, app_server)
    seq = shown_seq(page)
    drag(page, 0.5, 0.7, 0.7, 0.9)
    wait_png(page, seq)
    painted = pixels(page)
    seq = shown_seq(page)
    page.evaluate("() => window.ganpaintSocket.dropConnection()")
    page.wait_for_function("() => document.getElementById('banner').textContent.includes('reconnecting')", timeout=5000)
    page.wait_for_function("() => !document.getElementById('banner').textContent.includes('reconnecting')", timeout=15000)
    wait_png(page, seq)  # the recipe was sent again on the new socket
    assert np.array_equal(pixels(page), painted)  # no stroke lost
    seq = shown_seq(page)
    drag(page, 0.1, 0.7, 0.3, 0.9)
    wait_png(page, seq)
    assert page.locator("#history li").count() == 2


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_viewports(browser, app_server: dict, viewport: tuple[int, int]) -> None:
    touch = viewport[0] < 500
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, has_touch=touch, is_mobile=touch)
    page = context.new_page()
    open_painter(page, app_server)
    choose_brush(page, app_server)
    box = page.locator("#overlay").bounding_box()
    assert box["width"] >= min(300, viewport[0] - 40) and box["x"] >= 0 and box["x"] + box["width"] <= viewport[0]
    seq = shown_seq(page)
    if touch:
        page.locator("#overlay").scroll_into_view_if_needed()
        box = page.locator("#overlay").bounding_box()
        page.touchscreen.tap(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.8)
    else:
        drag(page, 0.2, 0.7, 0.3, 0.8)
    wait_png(page, seq)
    assert page.locator("#history li").count() == 1
    context.close()


def test_remove_a_lamp(page, app_server: dict) -> None:
    if not app_server["world"]:
        pytest.skip("needs the world64 zoo model (lamps)")
    from dissect_core.segmenters import load_segmenter
    from models.samples import z_tensor
    from models.world.labels import label_id
    from models.zoo import load_model

    generator, segmenter = load_model("world64"), load_segmenter("world64/segmenter")
    lamp = label_id("lamp")
    with torch.no_grad():
        labels = segmenter(generator(z_tensor(range(200), generator.z_dim)).clamp(-1, 1))[:, 0]
    counts = (labels == lamp).flatten(1).sum(1)
    sample = int(counts.argmax())
    ys, xs = np.nonzero(labels[sample].numpy() == lamp)
    size = labels.shape[-1]
    open_painter(page, app_server)
    page.locator("#goto-id").fill(str(sample))
    before = shown_seq(page)  # read before the click: the new frame may arrive before we look
    page.get_by_role("button", name="go to sample id").click()
    seq = wait_png(page, before)
    page.get_by_role("button", name="brush lamp").click()
    page.get_by_role("button", name="remove (R)").click()
    page.locator("#strength").fill("100")
    page.locator("#brush-size").fill("40")
    x0, x1 = (xs.min() - 2) / size, (xs.max() + 2) / size
    y0, y1 = (ys.min() - 2) / size, (ys.max() + 2) / size
    drag(page, max(x0, 0.01), max(y0, 0.01), min(x1, 0.99), min(y1, 0.99))
    wait_png(page, seq)
    after = torch.from_numpy(pixels(page)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        remaining = int((segmenter(after)[:, 0] == lamp).sum())
    assert remaining < 0.5 * int(counts[sample]), (remaining, int(counts[sample]))


def test_unit_browser(page, app_server: dict) -> None:
    page.goto(app_server["base"] + "/units")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    rows = page.locator("#rows tr")
    assert rows.count() > 0
    # the gallery shows the table's single drawing units (share >= 10 %), else the smallest drawing
    # unit set, and names the concepts with neither
    gallery = httpx.get(f"{app_server['base']}/api/models/{app_server['model']}/layers/layer4/dissection").json()["gallery"]
    assert page.locator("#gallery-section").is_hidden() == (not gallery)
    shown = {c: [e["unit"]] if e["share"] >= 0.1 else e["set"]["units"] for c, e in gallery.items()
             if e["share"] >= 0.1 or "set" in e}
    items = page.locator(".gallery-item").evaluate_all("els => els.map(e => [e.dataset.concept, e.dataset.units])")
    assert {c: [int(u) for u in units.split(",")] for c, units in items} == shown
    for concept in set(gallery) - set(shown):
        assert concept in page.locator("#gallery-none").inner_text()
    if shown:
        page.wait_for_function("() => [...document.querySelectorAll('.gallery-item img')].every(i => i.naturalWidth > 0)")
    ious = [float(v) for v in page.locator("#rows tr td:nth-child(5)").all_inner_texts()]
    assert ious == sorted(ious, reverse=True)
    page.get_by_role("button", name="unit", exact=True).click()
    units = [int(v) for v in page.locator("#rows tr td:nth-child(2)").all_inner_texts()]
    assert units == sorted(units, reverse=True) or units == sorted(units)
    label = page.locator("#rows tr td:nth-child(3)").first.inner_text()
    page.get_by_label("filter by label").fill(label)
    assert all(label in t for t in page.locator("#rows tr td:nth-child(3)").all_inner_texts())
    # top image strips load
    page.wait_for_function("() => { const i = document.querySelector('#rows img'); return i && i.complete && i.naturalWidth > 0; }")
    # save a custom brush and find it in the painter
    page.locator("#rows input[type=checkbox]").first.check()
    page.get_by_label("custom brush name").fill("my units")
    page.get_by_role("button", name="save selected units as a brush").click()
    page.get_by_role("link", name="Painter").click()
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_by_role("button", name="brush my units").count() == 1
    assert json.loads(page.evaluate("() => localStorage.getItem('ganpaint-custom-brushes')"))[0]["name"] == "my units"


def test_cam_and_unit_pages(page, app_server: dict) -> None:
    page.goto(app_server["base"] + "/cam")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    assert page.locator("#results canvas").count() == 5  # input + 4 default methods
    assert "predictions:" in page.locator("#predictions").inner_text()
    page.goto(app_server["base"] + "/unit?layer=features.block3&unit=2")
    page.wait_for_selector("body[data-ready=true]", timeout=120_000)
    page.wait_for_function("() => document.getElementById('featviz').naturalWidth > 0", timeout=60_000)
    assert "IoU" in page.locator("#dissection").inner_text()


def test_a_late_preview_never_covers_the_final_image(page, app_server: dict) -> None:
    """A drag preview that arrives just before the final PNG but decodes after it must not be drawn
    over it (it was: the canvas then showed a stale JPEG)."""
    open_painter(page, app_server)
    final_seq = page.evaluate("""async () => {
      const big = document.createElement('canvas'); big.width = big.height = 2048;
      const g = big.getContext('2d');
      for (let i = 0; i < 3000; i++) { g.fillStyle = `hsl(${i % 360},60%,50%)`; g.fillRect((i * 97) % 2048, (i * 53) % 2048, 48, 48); }
      const jpeg = await new Promise((r) => big.toBlob(r, 'image/jpeg', 0.97));
      const small = document.createElement('canvas'); small.width = small.height = 64;
      const png = await new Promise((r) => small.toBlob(r, 'image/png'));
      const socket = window.ganpaintSocket;
      const seq = socket.shownSeq + 100;
      const header = (s, format) => ({ type: 'image', seq: s, format, width: 64, height: 64, timings: { compute_ms: 1 } });
      socket.emit('image', { header: header(seq + 1, 'jpeg'), blob: jpeg });
      socket.emit('image', { header: header(seq + 2, 'png'), blob: png });
      return seq + 2;
    }""")
    page.wait_for_function("s => Number(document.getElementById('image').dataset.seq) === s", arg=final_seq)
    page.wait_for_timeout(1500)  # the large JPEG has long finished decoding by now
    assert page.eval_on_selector("#image", "c => [c.dataset.seq, c.dataset.format]") == [str(final_seq), "png"]


def test_token_mode_sign_in_then_paint(page, token_server: dict) -> None:
    """With GANPAINT_TOKEN set, a browser is sent to the sign-in page, and after signing in every
    request works: REST, images in <img src> (no header possible) and the painting websocket."""
    page.goto(token_server["base"] + "/units")
    page.wait_for_url("**/login?next=*", timeout=15_000)
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    page.wait_for_function("() => document.getElementById('login-error').textContent.includes('wrong token')")
    page.fill("#token", "browser-s3cret")
    page.click("button[type=submit]")
    page.wait_for_url(token_server["base"] + "/units", timeout=15_000)
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["ganpaint_session"]["httpOnly"] and cookies["ganpaint_session"]["sameSite"] == "Strict"
    assert page.evaluate("() => document.cookie") == ""  # page scripts never see the session
    page.goto(token_server["base"] + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    wait_png(page, 0)
    page.wait_for_function("() => { const imgs = [...document.querySelectorAll('img')];"
                           " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }", timeout=20_000)
    assert pixels(page).std() > 1


def _sign_in(page) -> None:
    page.wait_for_url("**/login?next=*", timeout=15_000)
    page.fill("#token", "browser-s3cret")
    page.click("button[type=submit]")


def test_a_shared_link_survives_sign_in_and_next_never_leaves_the_site(browser, token_server: dict) -> None:
    """A share link opened in a browser that has not signed in comes back, #r= fragment and all; a
    ``next`` that a browser would read as another host (backslashes, //) lands on the painter."""
    base = token_server["base"]
    context = browser.new_context()
    page = context.new_page()
    shared = "/?model=" + token_server["model"] + "#r=eyJ2IjoxfQ"
    page.goto(base + shared)
    _sign_in(page)
    page.wait_for_url(base + shared, timeout=15_000)
    assert page.evaluate("() => location.hash") == "#r=eyJ2IjoxfQ"
    for evil in ("/%5Cexample.com/x", "/%5C%5Cexample.org", "//example.com", "https://example.com/", "/%09/example.com"):
        page.goto(base + "/api/logout")  # (a GET: 405, but the page is on the site again)
        page.context.clear_cookies()
        page.goto(base + "/login?next=" + evil)
        page.fill("#token", "browser-s3cret")
        page.click("button[type=submit]")
        page.wait_for_load_state()
        page.wait_for_function("() => location.pathname !== '/login'", timeout=15_000)
        assert page.url.startswith(base + "/"), (evil, page.url)
    context.close()


def test_logout_revokes_the_session(browser, token_server: dict) -> None:
    base = token_server["base"]
    context = browser.new_context()
    page = context.new_page()
    page.goto(base + "/units")
    _sign_in(page)
    page.wait_for_url(base + "/units", timeout=15_000)
    session = {c["name"]: c for c in context.cookies()}["ganpaint_session"]["value"]
    assert httpx.get(base + "/api/models", cookies={"ganpaint_session": session}).status_code == 200
    page.evaluate("() => fetch('/api/logout', {method: 'POST'})")
    # the old cookie value is dead on the server, not only deleted in this browser
    assert httpx.get(base + "/api/models", cookies={"ganpaint_session": session}).status_code == 401
    context.close()


def test_a_second_host_name_says_why_the_socket_is_refused(page, token_server: dict) -> None:
    """The server listens on every interface but allows the Origin of its own name only: reached as
    http://127.0.0.2:PORT the page loads and the painter says what to set instead of retrying forever."""
    other = f"http://127.0.0.2:{token_server['port']}"
    page.goto(other + "/login")
    page.fill("#token", "browser-s3cret")
    page.click("button[type=submit]")
    page.wait_for_url(other + "/", timeout=15_000)
    page.wait_for_function("() => document.getElementById('banner').textContent.includes('GANPAINT_ALLOWED_ORIGINS')",
                           timeout=20_000)
    text = page.locator("#banner").text_content()
    assert "http://127.0.0.2" in text and "retrying" not in text


def test_paint_your_own_picture_then_download(page, world128_server: dict, tmp_path: Path) -> None:
    """Upload a world render the GAN never made, see the encoder's version then the refined one, paint a
    tree on its grass, compare with the original, download: the far side of the picture is the upload's
    own pixels."""
    from models.world import render_scene, world_seed

    scene = render_scene(world_seed("heldout", 4242), 160, world="framed")
    wide = np.concatenate([scene.image, scene.image[:, :32]], axis=1)  # 160 x 192: cropped to a square
    path = tmp_path / "my-scene.png"
    Image.fromarray(wide).save(path)
    open_painter(page, world128_server)
    seq = shown_seq(page)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="paint your own picture").click()
    chooser.value.set_files(str(path))
    page.wait_for_function("() => window.ganpaint.view.upload", timeout=30_000)
    seq = wait_png(page, seq)
    upload_id = page.evaluate("() => window.ganpaint.view.upload")
    base = world128_server["base"]
    original = np.asarray(Image.open(io.BytesIO(httpx.get(f"{base}/api/uploads/{upload_id}/files/picture.png").content))
                          .convert("RGB")).astype(np.int32)
    assert original.shape == (128, 128, 3)
    assert np.array_equal(pixels(page), original)  # unedited: the picture itself
    assert "encoder" in page.locator("#upload-status").inner_text()
    page.wait_for_function("() => document.getElementById('upload-status').textContent.includes('adapted')",
                           timeout=120_000)
    assert page.locator("#reconstructions img").count() == 4
    page.get_by_role("button", name="brush tree").click()
    page.locator("#strength").fill("100")
    seq = shown_seq(page)
    drag(page, 0.1, 0.85, 0.3, 0.95)  # grass at the bottom left
    seq = wait_png(page, seq)
    painted = pixels(page)
    assert np.abs(painted[100:, :40] - original[100:, :40]).mean() > 5
    assert np.array_equal(painted[:40, 88:], original[:40, 88:])  # the far corner is untouched
    page.get_by_role("button", name="show the original picture").click()
    page.wait_for_function("() => document.getElementById('before-after').getAttribute('aria-pressed') === 'true'")
    assert np.array_equal(pixels(page), original)
    page.get_by_role("button", name="show the original picture").click()
    page.wait_for_function("() => document.getElementById('before-after').getAttribute('aria-pressed') === 'false'")
    assert np.array_equal(pixels(page), painted)
    with page.expect_download() as info:
        page.get_by_role("button", name="download PNG").click()
    data = Path(info.value.path()).read_bytes()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int32), painted)
    assert "#r=" in page.url  # the share link names the upload
