"""Dataset repos and what the Hub derives from model repos, against a real `spacehub serve`.

Real clients only: huggingface_hub (HfApi, hf_hub_download, snapshot_download, HfFileSystem, the `hf` CLI),
`datasets.load_dataset` through HF_ENDPOINT, and transformers' push_to_hub / from_pretrained with sharded
safetensors (which go through LFS here: the server's LFS threshold is set low).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import HfApi, HfFileSystem, Volume, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import BadRequestError, RepositoryNotFoundError

from support.server import Server

pytestmark = pytest.mark.timeout(900)

CSV = "city,population\nParis,2100000\nLyon,520000\nNice,340000\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("datasets") / "data", lfs_threshold_bytes=str(64 * 1024), gpus="")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()  # apps outlive serve on purpose (re-adoption); not past this module


@pytest.fixture(autouse=True)
def no_xet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # what HF_HUB_DISABLE_XET=1 does


@pytest.fixture(scope="module")
def api(server: Server) -> HfApi:
    return HfApi(endpoint=server.url, token=server.token)


def run_python(code: str, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", **env})
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def parquet_bytes() -> bytes:
    table = pa.table({"word": ["alpha", "beta", "gamma", "delta"], "length": [5, 4, 5, 5]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.fixture(scope="module")
def datasets_made(server: Server, api: HfApi) -> dict[str, str]:
    # Before any dataset exists, listing answers an empty list (not an error).
    assert list(api.list_datasets()) == []
    api.create_repo("admin/cities", repo_type="dataset")
    api.upload_file(path_or_fileobj=CSV.encode(), path_in_repo="data/cities.csv", repo_id="admin/cities",
                    repo_type="dataset")
    api.upload_file(path_or_fileobj=b"---\nlicense: mit\ntags: [geography]\n---\n# Cities\n",
                    path_in_repo="README.md", repo_id="admin/cities", repo_type="dataset")
    api.create_repo("admin/words", repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=parquet_bytes(), path_in_repo="data/train.parquet", repo_id="admin/words",
                    repo_type="dataset")
    return {"public": "admin/cities", "private": "admin/words"}


def test_dataset_repos_everywhere_models_have_them(server: Server, api: HfApi, datasets_made: dict[str, str],
                                                   tmp_path: Path) -> None:
    info = api.dataset_info("admin/cities")
    assert info.id == "admin/cities" and info.sha and "geography" in (info.tags or [])
    assert "license:mit" in (info.tags or [])
    assert sorted(api.list_repo_files("admin/cities", repo_type="dataset")) == ["README.md", "data/cities.csv"]
    tree = [entry.path for entry in api.list_repo_tree("admin/cities", "data", repo_type="dataset")]
    assert tree == ["data/cities.csv"]
    assert [c.title for c in api.list_repo_commits("admin/cities", repo_type="dataset")][0].startswith("Upload")
    refs = api.list_repo_refs("admin/cities", repo_type="dataset")
    assert [branch.name for branch in refs.branches] == ["main"]
    api.create_branch("admin/cities", branch="v2", repo_type="dataset")
    assert {b.name for b in api.list_repo_refs("admin/cities", repo_type="dataset").branches} == {"main", "v2"}

    path = hf_hub_download("admin/cities", "data/cities.csv", repo_type="dataset", endpoint=server.url,
                           token=False, cache_dir=tmp_path / "cache")
    assert Path(path).read_text() == CSV
    snapshot = Path(snapshot_download("admin/words", repo_type="dataset", endpoint=server.url,
                                      token=server.token, cache_dir=tmp_path / "cache"))
    assert (snapshot / "data" / "train.parquet").read_bytes() == parquet_bytes()
    fs = HfFileSystem(endpoint=server.url, token=server.token)
    assert fs.ls("datasets/admin/cities/data", detail=False) == ["datasets/admin/cities/data/cities.csv"]
    assert fs.read_text("datasets/admin/cities/data/cities.csv") == CSV

    # Listing with filters; the private one only for those who may read it.
    assert {d.id for d in api.list_datasets(author="admin")} == {"admin/cities", "admin/words"}
    assert [d.id for d in api.list_datasets(filter="geography")] == ["admin/cities"]
    anonymous = HfApi(endpoint=server.url, token=False)
    assert [d.id for d in anonymous.list_datasets()] == ["admin/cities"]
    with pytest.raises(RepositoryNotFoundError):
        anonymous.dataset_info("admin/words")
    hf_cli = str(Path(sys.executable).parent / "hf")
    listed = subprocess.run([hf_cli, "datasets", "ls", "--author", "admin", "--format", "json"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": server.token})
    assert listed.returncode == 0, listed.stderr
    assert {item["id"] for item in json.loads(listed.stdout)} == {"admin/cities", "admin/words"}


LOAD_DATASET = """
import json, sys
from datasets import load_dataset
rows = load_dataset(sys.argv[1], split="train")
print(json.dumps(rows.to_list()))
"""


def test_load_dataset_through_hf_endpoint(server: Server, datasets_made: dict[str, str], tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": ""}
    public = json.loads(run_python(LOAD_DATASET, "admin/cities", env=env))
    assert public == [{"city": "Paris", "population": 2100000}, {"city": "Lyon", "population": 520000},
                      {"city": "Nice", "population": 340000}]
    refused = subprocess.run([sys.executable, "-c", LOAD_DATASET, "admin/words"], capture_output=True, text=True,
                             timeout=300, env={**os.environ, **env, "HF_HUB_DISABLE_XET": "1"})
    assert refused.returncode != 0  # private: not without the token
    private = json.loads(run_python(LOAD_DATASET, "admin/words",
                                    env={**env, "HF_TOKEN": server.token, "HF_HOME": str(tmp_path / "other")}))
    assert private == [{"word": "alpha", "length": 5}, {"word": "beta", "length": 4},
                       {"word": "gamma", "length": 5}, {"word": "delta", "length": 5}]


# Models: sharded safetensors through LFS, and what the Hub derives --------------------------------------------


PUSH_SHARDED = """
import sys, torch
from transformers import BertConfig, BertForMaskedLM
torch.manual_seed(0)
config = BertConfig(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64)
model = BertForMaskedLM(config)
model.save_pretrained(sys.argv[2])
model.push_to_hub(sys.argv[1], max_shard_size="100KB")
"""

LOAD_AND_RUN = """
import json, sys, torch
from transformers import BertForMaskedLM
model = BertForMaskedLM.from_pretrained(sys.argv[1]).eval()
with torch.no_grad():
    print(json.dumps(model(input_ids=torch.tensor([[1, 2, 3, 4]])).logits.flatten()[:50].tolist()))
"""

PUSH_PLAIN = """
import sys, torch
from transformers import BertConfig, BertModel
torch.manual_seed(0)
BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                     intermediate_size=16, max_position_embeddings=16)).push_to_hub(sys.argv[1])
"""


def test_sharded_model_push_to_hub_and_from_pretrained(server: Server, api: HfApi, tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": server.url, "HF_TOKEN": server.token, "HF_HOME": str(tmp_path / "hf-home")}
    local = tmp_path / "local"
    run_python(PUSH_SHARDED, "admin/sharded-bert", str(local), env=env)
    run_python(PUSH_PLAIN, "admin/plain-bert", env=env)
    files = {entry.path: entry for entry in api.list_repo_tree("admin/sharded-bert", recursive=True)}
    shards = [path for path in files if path.endswith(".safetensors")]
    assert len(shards) > 1 and "model.safetensors.index.json" in files
    assert all(files[path].lfs is not None for path in shards if files[path].size >= 64 * 1024)
    assert any(files[path].lfs is not None for path in shards)

    remote = json.loads(run_python(LOAD_AND_RUN, "admin/sharded-bert", env={**env, "HF_TOKEN": ""}))
    expected = json.loads(run_python(LOAD_AND_RUN, str(local), env={"HF_HUB_OFFLINE": "1"}))
    assert remote == expected

    info = api.model_info("admin/sharded-bert")
    assert info.pipeline_tag == "fill-mask" and info.library_name == "transformers"
    assert {"transformers", "safetensors", "bert", "fill-mask"} <= set(info.tags or [])
    assert info.safetensors is not None and info.safetensors.total > 0
    assert set(info.safetensors.parameters) == {"F32"}
    assert api.model_info("admin/plain-bert").pipeline_tag == "feature-extraction"

    assert [m.id for m in api.list_models(pipeline_tag="fill-mask")] == ["admin/sharded-bert"]
    assert {m.id for m in api.list_models(filter="transformers")} == {"admin/sharded-bert", "admin/plain-bert"}
    assert {m.id for m in api.list_models(filter=["bert", "fill-mask"])} == {"admin/sharded-bert"}


# The remaining space endpoints --------------------------------------------------------------------------------


def test_space_hardware_volumes_and_sleep_time(server: Server, api: HfApi) -> None:
    listed = {flavor.name: flavor for flavor in api.list_spaces_hardware()}
    assert listed["cpu-basic"].cpu == "2 vCPU" and listed["cpu-basic"].accelerator is None
    assert not [name for name, flavor in listed.items() if flavor.accelerator]  # SPACEHUB_GPUS is empty here

    volume = Volume(type="dataset", source="admin/cities", mount_path="/data")
    with pytest.raises(BadRequestError, match="volumes are not supported"):
        api.create_repo("admin/with-volume", repo_type="space", space_sdk="static", space_volumes=[volume])
    with pytest.raises(RepositoryNotFoundError):
        api.space_info("admin/with-volume")  # refused whole, not created without its volume
    api.create_repo("admin/no-volume", repo_type="space", space_sdk="static")
    with pytest.raises(BadRequestError, match="volumes are not supported"):
        api.set_space_volumes("admin/no-volume", volumes=[volume])
    api.delete_space_volumes("admin/no-volume")  # none to delete

    assert api.get_space_runtime("admin/no-volume").sleep_time == 48 * 3600  # the default in force
    api.set_space_sleep_time("admin/no-volume", 600)
    assert api.get_space_runtime("admin/no-volume").sleep_time == 600


# Web pages ----------------------------------------------------------------------------------------------------


def test_repo_pages_and_lfs_in_the_files_tab(server: Server, api: HfApi, datasets_made: dict[str, str]) -> None:
    api.create_repo("admin/page-model")
    api.upload_file(path_or_fileobj=b"---\nlicense: mit\npipeline_tag: fill-mask\n---\n# A *tiny* model\n\n"
                    b"<script>alert(1)</script>\n", path_in_repo="README.md", repo_id="admin/page-model")
    api.upload_file(path_or_fileobj=os.urandom(200 * 1024), path_in_repo="weights.bin", repo_id="admin/page-model")
    auth = {"Authorization": f"Bearer {server.token}"}
    model = server.api.get("/admin/page-model", headers=auth)
    assert model.status_code == 200 and "text/html" in model.headers["content-type"]
    assert "<h1>A <em>tiny</em> model</h1>" in model.text
    assert "<script>alert(1)</script>" not in model.text  # raw HTML in a card is never rendered
    assert 'data-entry="weights.bin"' in model.text and "LFS" in model.text and "204.8 kB" in model.text
    assert "/admin/page-model/resolve/" in model.text and 'data-tag="fill-mask"' in model.text
    dataset = server.api.get("/datasets/admin/cities", headers=auth)
    assert dataset.status_code == 200 and "Cities" in dataset.text and "data/cities.csv" in dataset.text
    assert server.api.get("/datasets/admin/words", headers={"Authorization": ""}).status_code == 404
    owner = server.api.get("/admin", headers=auth)
    assert 'href="/admin/page-model"' in owner.text and 'href="/datasets/admin/cities"' in owner.text

    api.create_repo("admin/lfs-space", repo_type="space", space_sdk="static")
    big = os.urandom(100 * 1024)
    api.upload_file(path_or_fileobj=big, path_in_repo="assets/big.bin", repo_id="admin/lfs-space",
                    repo_type="space")
    files = server.api.get("/spaces/admin/lfs-space/tree/main/assets", headers=auth)
    assert files.status_code == 200 and "data-lfs" in files.text and "102.4 kB" in files.text
    raw = server.api.get("/spaces/admin/lfs-space/raw/main/assets/big.bin", headers=auth)
    assert raw.content == big  # the file, not its pointer

    # The space's app sees the file's bytes too: its build places LFS objects in the checkout.
    api.upload_file(path_or_fileobj=b"<h1>static</h1>", path_in_repo="index.html", repo_id="admin/lfs-space",
                    repo_type="space")
    runtime = server.wait_stage("admin/lfs-space", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR", "NO_APP_FILE"})
    assert runtime["stage"] == "RUNNING", runtime
    served = server.space_get(api.space_info("admin/lfs-space").subdomain or "", "/assets/big.bin")
    assert served.status_code == 200 and served.content == big
