"""A short run of benchmarks/loadtest.py: concurrent clients on the real server (`sifir serve` in
its own process), every answer equal to the offline prediction, no errors. Counts only: how fast
it went depends on the machine and is not asserted."""
import pytest

from conftest import load_loadtest

loadtest = load_loadtest()


@pytest.fixture(scope="module")
def workload(trained_seed_model, mnist_dir):
    return loadtest.build_workload(trained_seed_model, count=50, data_dir=mnist_dir)


@pytest.fixture(scope="module")
def server_url(trained_seed_model):
    with loadtest.start_server(trained_seed_model) as server:
        yield server.url


def test_concurrent_clients_get_the_offline_answers(server_url, workload):
    result = loadtest.run_load(server_url, workload, clients=4, duration=3.0, max_requests=2000)
    assert result.errors == []
    assert result.mismatches == []
    assert result.requests > 0 and len(result.latencies) == result.requests
    summary = result.summary()
    assert summary["errors"] == 0 and summary["mismatches"] == 0 and summary["requests"] == result.requests


def test_the_request_budget_stops_the_run(server_url, workload):
    # a long time limit, a small budget: the count must end it, exactly at the budget
    result = loadtest.run_load(server_url, workload, clients=3, duration=600.0, max_requests=25)
    assert result.requests == 25
    assert result.errors == [] and result.mismatches == []


def test_the_workload_is_real_digits_with_offline_answers(workload):
    assert len(workload.bodies) == len(workload.expected) == len(workload.labels) == 50
    assert all(body.startswith(b'{"image": "data:image/png;base64,iVBORw0KGgo') for body in workload.bodies)
    correct = sum(int(p.argmax()) == label for p, label in zip(workload.expected, workload.labels))
    assert correct >= 40   # a trained network reading MNIST test digits


@pytest.mark.parametrize("url", ["http://example.com:8000", "http://10.0.0.1:8000", "http://localhost:8000",
                                 "https://127.0.0.1:8000", "http://127.0.0.2:8000", "http://[::1]:8000",
                                 "http://127.0.0.1.example.com:8000"])
def test_only_127_0_0_1_is_ever_loaded(url, workload):
    with pytest.raises(ValueError, match="targets only"):
        loadtest.run_load(url, workload, clients=1, duration=1.0, max_requests=1)


def test_the_script_refuses_another_host_before_loading_anything(capsys):
    with pytest.raises(SystemExit) as exit_info:
        loadtest.main(["some-model.npz", "--url", "http://192.168.1.10:8000"])
    assert exit_info.value.code == 2
    assert "targets only http://127.0.0.1" in capsys.readouterr().err
