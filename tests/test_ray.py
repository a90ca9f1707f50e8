"""``evaluate --ray`` and ``trust --ray`` on a real Ray cluster started here: a head and one worker node, both on
this machine.

The cluster, its token and its files are this module's own: started with
``ray start --block`` in a temporary folder and stopped by the pids it started,
never with ``ray stop`` (which would end every Ray on the machine).
"""

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import explainers as ex
from explainers.bench_ray import varied_digits
from explainers.datasets.sources import Reader, list_images
from explainers.datasets.storage import open_results, write_results
from explainers.distributed import cluster as ray_cluster
from explainers.distributed import dataset_pipeline
from explainers.distributed import session as ray_session
from explainers.distributed.cluster import ModelSpec
from explainers.distributed.dataset_pipeline import evaluate_on_ray
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.plugins import load_plugin
from explainers.trust.distributed import evaluate_trust_ray
from explainers.trust.evaluate import evaluate_trust
from explainers.trust.masks import masks_from_strokes
from explainers.trust.registry import METRICS
from explainers.trust.scoring import VALUES, trust_request
from explainers.trust.storage import open_trust
from helpers import pearson

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))
COPIES = 4  # each digit as given, shifted, and shifted with noise: 4,000 images
BROKEN = {"3/corrupt.png": b"\x89PNG\r\n\x1a\n not really a png", "7/empty.png": b""}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_ports() -> list[str]:
    """Every port a node opens, chosen free: two nodes on one machine must not both take Ray's defaults."""
    names = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
    return [part for name in names for part in (name, str(_free_port()))]


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def _command_lines() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return found


def _processes_of(roots: list[int], title: str = "") -> list[int]:
    """Pids below ``roots`` (the `ray start` processes this module started) whose command line holds ``title``."""
    return [pid for pid, command in _command_lines().items()
            if title in command and any(_descends_from(pid, root) for root in roots)]


def _processes_naming(text: str) -> list[int]:
    return [pid for pid, command in _command_lines().items() if text in command]


class Cluster:
    """A head (1 CPU) and a worker node (2 CPUs) on 127.0.0.1, as `ray start` starts them on two machines."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env, self.port = folder, env, _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.folder / f"{name}.log", "wb")
        # --block keeps `ray start` in the foreground as the parent of its node's processes: stopping it stops them.
        self.nodes.append(subprocess.Popen([RAY, "start", *args, "--block", *_node_ports()], env=self.env,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def _log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]

    def start(self) -> None:
        self._start("head", ["--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port), "--num-cpus", "1",
                             "--include-dashboard", "false", "--dashboard-port", str(_free_port()),
                             "--ray-client-server-port", str(_free_port()), "--temp-dir", str(self.folder),
                             "--disable-usage-stats"])
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.nodes[0].poll() is None and time.monotonic() < deadline, self._log("head")
                time.sleep(0.3)
        self._start("worker", ["--address", self.address, "--num-cpus", "2"])

    def wait_for_nodes(self, ray) -> None:
        deadline = time.monotonic() + 90
        while sum(node["Alive"] for node in ray.nodes()) < 2:
            assert self.nodes[1].poll() is None and time.monotonic() < deadline, self._log("worker")
            time.sleep(0.3)

    def stop(self) -> None:
        """The worker first, while the head can still hear it leave; each `ray start` stops its own processes."""
        roots = [node.pid for node in self.nodes]
        for node in reversed(self.nodes):
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        for pid in _processes_of(roots):  # anything that outlived its `ray start`
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def ray_env():
    """Ray settings for this module's processes, set before `ray` is first imported here: no usage report, a
    token of the cluster's own (Ray would otherwise write one to ~/.ray), the engine importable on every node."""
    values = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
              "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # a node told to stop stops: nothing here to drain
              "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    yield dict(os.environ)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def cluster(ray_env):
    import ray

    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths live under it
    running = Cluster(folder, ray_env)
    try:
        running.start()
        ray.init(address=running.address, logging_level="WARNING", log_to_driver=False)
        running.wait_for_nodes(ray)
        yield running
    finally:
        if ray.is_initialized():
            ray.shutdown()
        running.stop()
        subprocess.run(["rm", "-rf", str(folder)], check=False)


@pytest.fixture(scope="module")
def digits_model() -> ex.LoadedModel:
    return ex.load_model(ex.DIGITS_MODEL)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """The digits demo four times over (as given, shifted, shifted with noise), plus two files that cannot be read."""
    root = varied_digits(tmp_path_factory.mktemp("digits"), COPIES)
    for name, content in BROKEN.items():
        (root / name).write_bytes(content)
    return root


@pytest.fixture(scope="module")
def in_process(digits, digits_model, tmp_path_factory):
    """The in-process run's results folder, opened."""
    out = tmp_path_factory.mktemp("in-process")
    write_results(out, ex.datasets.evaluate(digits_model, digits), digits_model)
    return open_results(out)


def test_importing_the_engine_does_not_import_ray():
    code = ("import sys, explainers, explainers.cli, explainers.distributed.dataset_pipeline, "
            "explainers.distributed.session; print('ray' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert shown.stdout.strip() == "False", shown.stderr[-2000:]


def test_the_cli_on_a_cluster_matches_the_in_process_run(cluster, digits, in_process, tmp_path, ray_env):
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "explainers", "evaluate", "--model", "digits_cnn", "--data", str(digits),
               "--out", str(out), "--ray", cluster.address, "--actors", "2"]
    done = subprocess.run(command, capture_output=True, text=True, env=ray_env, cwd=PROJECT_ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    on_ray = open_results(out)
    assert on_ray.runner == f"ray {cluster.address}" and on_ray.total == in_process.total == 4002
    assert on_ray.files == in_process.files and len(on_ray.files) == 4000
    np.testing.assert_array_equal(on_ray.true, in_process.true)
    np.testing.assert_array_equal(on_ray.predicted, in_process.predicted)
    np.testing.assert_allclose(on_ray.top_probabilities, in_process.top_probabilities, atol=1e-4)
    assert on_ray.cams.shape == in_process.cams.shape and on_ray.cams.shape[1:] == (7, 7)
    assert pearson(on_ray.cams, in_process.cams) >= 0.999
    # Each unreadable file is a row with its reason, the same as in-process, and the job finished.
    assert sorted(on_ray.skipped_images) == sorted(in_process.skipped_images)
    assert {path for path, _ in on_ray.skipped_images} == set(BROKEN)
    assert all("corrupt.png" in reason or "empty.png" in reason for _, reason in on_ray.skipped_images)
    for report in ("confusion_matrix.csv", "confusion_matrix.png", "metrics.json", "predictions.csv"):
        assert (out / report).is_file(), report
    assert "skipped: 3/corrupt.png" in done.stderr


def test_ray_alone_starts_and_stops_a_ray_on_this_machine(digits_model, tmp_path, ray_env):
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # the local Ray's files: short, and removed here
    command = [sys.executable, "-m", "explainers", "evaluate", "--model", "digits_cnn", "--data",
               str(DIGITS_TEST_FOLDER), "--out", str(tmp_path), "--ray", "--actors", "2"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env={**ray_env, "RAY_TMPDIR": str(folder)},
                              cwd=PROJECT_ROOT, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        on_ray = open_results(tmp_path)
        assert on_ray.runner == "ray local" and len(on_ray.files) == on_ray.total == 1000
        assert "on ray local with 2 actor(s)" in done.stderr.splitlines()[-1]
        assert not _processes_naming(str(folder))  # the run stopped the Ray it started
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def _actor_killer(cluster: Cluster, title: str, killed: dict[str, object]):
    """A progress callback that kills one actor (its process titled ``title``) a fifth of the way through, then
    notes in ``killed`` when Ray has started a replacement."""
    roots = [node.pid for node in cluster.nodes]

    def kill_an_actor(done: int, total: int) -> None:
        if killed.get("restarted") or done < total // 5:
            return
        actors = _processes_of(roots, title)
        if "pid" not in killed and actors:
            victim = max(actors, key=lambda pid: _descends_from(pid, roots[1]))  # the worker node's, if it has one
            os.kill(victim, signal.SIGKILL)
            killed.update(pid=victim, done=done, before=set(actors))
        elif "pid" in killed and set(actors) - killed["before"]:
            killed["restarted"] = True  # a new actor process: Ray replaced the one killed

    return kill_an_actor


def test_a_worker_killed_mid_run_leaves_every_row_once(cluster, digits, digits_model, in_process, tmp_path):
    killed: dict[str, object] = {}
    kill_an_actor = _actor_killer(cluster, "MapBatches(Scorer)", killed)
    run = evaluate_on_ray(digits_model, digits, tmp_path / "ray", actors=2, batch_size=32, on_progress=kill_an_actor)
    assert "pid" in killed and killed["done"] < run.rows, "no actor was killed while the run was under way"
    assert run.rows == 4002 and run.errors == 2
    on_ray = open_results(tmp_path / "ray")  # refuses a folder with two rows for one image
    assert on_ray.files == in_process.files
    assert len(set(on_ray.files)) == len(on_ray.files) == 4000
    np.testing.assert_array_equal(on_ray.predicted, in_process.predicted)
    assert killed.get("restarted"), "the killed actor was not replaced"


def test_a_model_missing_on_a_worker_is_one_sentence(cluster, digits_model, tmp_path):
    missing = ModelSpec(str(tmp_path / "elsewhere.keras"))  # the driver has the model; the nodes do not
    with pytest.raises(ex.InputError) as raised:
        evaluate_on_ray(digits_model, DIGITS_TEST_FOLDER, tmp_path / "out", spec=missing, on_progress=lambda *_: None)
    assert str(raised.value) == "On a Ray worker: 'elsewhere.keras' does not exist."  # named, its folder not shown


@pytest.mark.parametrize(("asked", "expected"), [
    ({"gpus_per_actor": 1.0}, "1 actor(s) with 1 CPU(s) and 1 GPU(s) each ask for 1 GPU(s), but the Ray cluster has "
                              "0; lower --actors or --gpus-per-actor."),
    ({"actors": 3}, "3 actor(s) with 1 CPU(s) each ask for 3 CPU(s), plus 0.25 for reading images, but the Ray "
                    "cluster has 3; lower --actors or --cpus-per-actor."),
])
def test_asking_for_more_than_the_cluster_has_is_one_sentence(cluster, digits_model, tmp_path, asked, expected):
    start = time.monotonic()
    with pytest.raises(ex.InputError) as raised:  # Ray Data alone would wait for the resources forever
        evaluate_on_ray(digits_model, DIGITS_TEST_FOLDER, tmp_path, on_progress=lambda *_: None, **asked)
    assert str(raised.value) == expected
    assert time.monotonic() - start < 10


def test_a_busy_cluster_gives_up_in_bounded_time_and_frees_what_it_asked_for(cluster, digits_model, tmp_path,
                                                                             monkeypatch):
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    monkeypatch.setattr(ray_cluster, "RESOURCES_SECONDS", 3)
    busy = placement_group([{"CPU": 1}] * 3)  # every CPU of the cluster taken, as by another job
    ray.get(busy.ready(), timeout=30)
    try:
        start = time.monotonic()
        with pytest.raises(ex.InputError) as raised:
            evaluate_on_ray(digits_model, DIGITS_TEST_FOLDER, tmp_path, on_progress=lambda *_: None)
        assert str(raised.value) == ("The Ray cluster had no room for 1 actor(s) with 1 CPU(s) each within 3 s: its "
                                     "nodes are busy, or each too small for one actor; try again later or lower "
                                     "--actors.")
        assert time.monotonic() - start < 30
    finally:
        remove_placement_group(busy)
    # Nothing of the run that gave up takes the CPUs once they are free: the next run has the whole cluster.
    deadline = time.monotonic() + 10
    while ray.available_resources().get("CPU", 0) < 3:
        assert time.monotonic() < deadline, f"CPUs still taken: {ray.available_resources()}"
        time.sleep(0.2)


def test_actors_slower_to_start_than_allowed_are_one_sentence(cluster, digits_model, tmp_path, monkeypatch,
                                                              caplog):
    import ray

    caplog.set_level(logging.CRITICAL, logger="ray.data")  # as the CLI does: no record keeps the failed run alive
    monkeypatch.setattr(ray_cluster, "ACTOR_START_SECONDS", 0.01)  # far less than building the model takes
    with pytest.raises(ex.InputError) as raised:
        evaluate_on_ray(digits_model, DIGITS_TEST_FOLDER, tmp_path, on_progress=lambda *_: None)
    assert str(raised.value) == ("1 actor(s) with 1 CPU(s) each did not all start on the Ray cluster within 0.01 s: "
                                 "its nodes became busy, or loading the model takes them longer; try again later.")
    # The actor Ray Data gave up on does not keep its CPU once it has started: the next run has the whole cluster.
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 3:
        assert time.monotonic() < deadline, f"CPUs still taken: {ray.available_resources()}"
        time.sleep(0.2)


@pytest.mark.parametrize(("raised_by_ray", "expected"), [
    ("timeout", "The Ray run failed: No progress for 1800 s."),
    ("internal", "The Ray run failed: KeyError: 'block'."),
])
def test_ray_data_errors_are_one_sentence_and_other_errors_are_not_hidden(cluster, digits_model, tmp_path,
                                                                         monkeypatch, raised_by_ray, expected):
    from ray.data.exceptions import ExecutionTimeoutError, SystemException

    def fail(*args, **kwargs):
        if raised_by_ray == "timeout":  # Ray Data's own, for a run that stopped making progress
            raise ExecutionTimeoutError("No progress for 1800 s.")
        raise KeyError("block") from SystemException()  # as Ray Data re-raises an error of its internals

    monkeypatch.setattr(dataset_pipeline, "run_pipeline", fail)
    with pytest.raises(ex.InputError) as raised:
        evaluate_on_ray(digits_model, DIGITS_TEST_FOLDER, tmp_path)
    assert str(raised.value) == expected

    def bug(*args, **kwargs):
        raise KeyError("a bug of this module's")

    monkeypatch.setattr(dataset_pipeline, "run_pipeline", bug)
    with pytest.raises(KeyError, match="a bug of this module's"):  # not hidden behind a sentence about Ray
        evaluate_on_ray(digits_model, DIGITS_TEST_FOLDER, tmp_path)


def test_no_image_in_a_class_of_the_model_is_refused_before_ray_starts(digits_model, tmp_path, monkeypatch):
    data = tmp_path / "data"
    for folder in ("cats", "dogs"):
        (data / folder).mkdir(parents=True)
        (data / folder / "one.png").write_bytes(min((DIGITS_TEST_FOLDER / "0").iterdir()).read_bytes())
    monkeypatch.setattr(ray_cluster, "import_ray", lambda: pytest.fail("Ray was started for a run with no rows"))
    with pytest.raises(ex.InputError) as raised:
        evaluate_on_ray(digits_model, data, tmp_path / "out", mapping_mode="by name")
    assert str(raised.value) == (f"No image in '{data.resolve()}' is in a folder the model has a class for (mapping "
                                 f"by name; folders: cats, dogs); check --mapping or the folder names.")
    assert not (tmp_path / "out").exists()


def test_a_uri_is_listed_and_read_through_pyarrow(digits, digits_model):
    uri = f"file://{digits}"
    local, remote = list_images(digits, digits_model), list_images(uri, digits_model)
    assert remote.remote and remote.root == uri
    assert remote.paths == [f"{uri}/{path}" for path in local.paths] and remote.true == local.true
    reader = Reader(remote.root, remote.remote)
    first = reader.decode(remote.sources[0], remote.paths[0])
    np.testing.assert_array_equal(first, ex.decode_image(digits / local.paths[0]))
    corrupt = remote.paths.index(f"{uri}/3/corrupt.png")
    assert "corrupt.png" in reader.decode(remote.sources[corrupt], remote.paths[corrupt])
    with pytest.raises(ex.InputError, match="does not exist"):
        list_images(f"file://{digits}/nothing-here", digits_model)


def test_an_address_where_nothing_listens_is_one_sentence(digits, tmp_path, ray_env):
    command = [sys.executable, "-m", "explainers", "evaluate", "--model", "digits_cnn", "--data", str(digits),
               "--out", str(tmp_path), "--ray", f"127.0.0.1:{_free_port()}"]
    done = subprocess.run(command, capture_output=True, text=True, env=ray_env, cwd=PROJECT_ROOT, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: No Ray cluster answers at 127.0.0.1:")


def test_a_port_that_is_no_ray_head_gives_up_in_bounded_time(ray_env, monkeypatch):
    monkeypatch.setattr(ray_session, "JOIN_SECONDS", 3.0)
    with socket.socket() as silent:  # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        def accept() -> None:
            with contextlib.suppress(OSError):  # the socket closes under it at the end
                while True:
                    silent.accept()

        accepting = threading.Thread(target=accept, daemon=True)
        accepting.start()
        start = time.monotonic()
        with pytest.raises(ex.InputError, match="no Ray cluster answered there within 3 s"):
            with ray_session.ray_session(f"127.0.0.1:{silent.getsockname()[1]}"):
                pass
        assert time.monotonic() - start < 15


@pytest.mark.parametrize("address", ["ray://127.0.0.1:10001", "127.0.0.1:port", ":6379"])
def test_a_malformed_address_is_one_sentence(address):
    with pytest.raises(ex.InputError, match="is not a Ray cluster address"):
        ray_session.parse_address(address)


# --- trust --ray -------------------------------------------------------------------------------------------------

POWER_PLUGIN = """
import numpy as np

from explainers.methods.registry import Param
from explainers.trust import register_metric


@register_metric("map_power_ray", "Mean power of the map", "complexity", "test_ray's plugin", higher_is_better=True,
                 help="The mean of |map| to the power `power`.", params=(Param("power", 1.0, "exponent", 0.5, 4.0, 0.5),))
def map_power(batch, params):
    return (np.abs(batch.maps.reshape(len(batch), -1)) ** params["power"]).mean(axis=1)
"""


def _same_scores(a, b) -> None:
    """Two TrustResults hold the same images, in the same order, and the same values (to float32 noise)."""
    assert list(a.images.image) == list(b.images.image)
    assert a.images.drop(columns="map_agreement").equals(b.images.drop(columns="map_agreement"))
    np.testing.assert_allclose(a.images.map_agreement, b.images.map_agreement, atol=1e-5)
    keys = ["image", "true_class", "explained_class", "method", "metric"]
    assert a.rows[keys].equals(b.rows[keys])
    np.testing.assert_allclose(a.rows.value, b.rows.value, rtol=1e-4, atol=1e-6)


def test_trust_on_a_cluster_with_a_plugin_metric_and_masks_writes_the_in_process_folder(
        cluster, digits, digits_model, tmp_path, ray_env):
    plugin = tmp_path / "power.py"
    plugin.write_text(POWER_PLUGIN)
    masks = tmp_path / "masks"  # every image's strokes as a mask file, but the ones: they have none
    for relative in list_images(digits, digits_model).paths:
        if relative.startswith("1/") or relative in BROKEN:
            continue
        strokes = ex.decode_image(digits / relative)[..., 0] > 127
        (masks / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.where(strokes, 255, 0).astype(np.uint8)).save(masks / relative)
    common = ["trust", "--plugin", str(plugin), "--model", "digits_cnn", "--data", str(digits), "--masks",
              str(masks), "--methods", "saliency,gradcam", "--metrics", "deletion,sparseness,pointing_game,map_power_ray",
              "--sample", "12", "--seed", "3"]
    outs = {}
    for runner, extra in (("ray", ["--ray", cluster.address, "--actors", "2"]), ("here", [])):
        outs[runner] = tmp_path / runner
        done = subprocess.run([sys.executable, "-m", "explainers", *common, "--out", str(outs[runner]), *extra],
                              capture_output=True, text=True, env=ray_env, cwd=PROJECT_ROOT, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    load_plugin(plugin)  # to reopen folders scored with the plugin's metric
    try:
        (on_ray, _, json_ray), (here, _, json_here) = (open_trust(outs[k]) for k in ("ray", "here"))
    finally:
        METRICS.pop("map_power_ray", None)
    assert len(on_ray.images) + len(on_ray.skipped) == on_ray.total == 120
    _same_scores(on_ray, here)
    assert on_ray.skipped == here.skipped and on_ray.mask_problems == here.mask_problems
    assert len(on_ray.mask_problems) == 12 and all(image.startswith("1/") for image, _ in on_ray.mask_problems)
    assert set(on_ray.rows.metric) == {"deletion", "sparseness", "pointing_game", "map_power_ray"}
    assert json_ray["ranking"] == json_here["ranking"] and json_ray["methods"] == json_here["methods"]


def test_trust_with_an_actor_killed_mid_run_scores_every_image_once(cluster, digits, digits_model):
    listing = list_images(digits, digits_model)
    request = trust_request(digits_model, ["saliency"], ["sparseness", "pointing_game"], has_masks=True)
    masks = masks_from_strokes()
    killed: dict[str, object] = {}
    kill_an_actor = _actor_killer(cluster, "MapBatches(TrustScorer)", killed)
    on_ray = evaluate_trust_ray(digits_model, listing, request, masks=masks, actors=2, on_progress=kill_an_actor)
    assert "pid" in killed and killed["done"] < on_ray.total, "no actor was killed while the run was under way"
    assert killed.get("restarted"), "the killed actor was not replaced"
    VALUES.clear()
    here = evaluate_trust(digits_model, listing, request, masks=masks)
    assert on_ray.total == here.total == 4002 and len(on_ray.images) == 4000
    assert sorted(on_ray.skipped) == sorted(here.skipped) and {p for p, _ in on_ray.skipped} == set(BROKEN)
    _same_scores(on_ray, here)  # every image once, none lost and none twice
    assert on_ray.computed == len(on_ray.rows)  # nothing came from the driver's cache: the actors computed all


def test_trust_on_ray_with_a_plugin_missing_on_the_nodes_is_one_sentence(cluster, digits_model, tmp_path):
    listing = list_images(DIGITS_TEST_FOLDER, digits_model)
    request = trust_request(digits_model, ["saliency"], ["sparseness"], has_masks=False)
    with pytest.raises(ex.InputError) as raised:
        evaluate_trust_ray(digits_model, listing, request, per_class=1, plugins=[tmp_path / "gone.py"],
                           on_progress=lambda *_: None)
    # The CLI's user named the file: the sentence names it as the nodes saw it.
    assert str(raised.value) == f"On a Ray worker: The plugin '{tmp_path / 'gone.py'}' does not exist."
