"""``deploy-async.sh --role``: one command deploys a distributed service to
several hosts -- here two deploy paths of this machine behind the same real
sshd, one ``api`` (nginx + gunicorn), one ``worker`` (``python -m
destination_predictor.worker``, no nginx, no port) -- against a real
redis-server and the suite's PostgreSQL, with PREDICT_DATA_DIR in the env
file pointing both at one directory (what an NFS mount is for real
machines). A task submitted to the API host is run by the worker host; then
status, a stop of the worker role only, and a stop of everything, each over
SSH for both hosts in one command.

The refusals need no deploy: a worker without Redis or PostgreSQL settings,
and options that make no sense for several hosts, are refused before
anything is touched.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry
from support.cluster import RedisServer, need_redis, rq_workers
from support.live_server import (
    free_port,
    kill_leftover,
    port_open,
    reachable_tmp_dir,
    run_deploy_script,
)
from support.pg import PgServer, next_database_name
from support.service import YEAR, grade_workbook
from support.sshd import Sshd, running_sshd

from destination_predictor.client import ApiClient
from destination_predictor.service.dispatch import NORMAL
from destination_predictor.worker.probe import descends_from

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    with reachable_tmp_dir("deploy-roles-") as path:
        yield path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory, work: Path) -> Iterator[Sshd]:
    with running_sshd(tmp_path_factory.mktemp("sshd"), work) as server:
        yield server


@pytest.fixture(scope="module")
def queue(work: Path) -> Iterator[RedisServer]:
    server = RedisServer(need_redis(), work / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def write_env(path: Path, lines: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    path.chmod(0o600)
    return path


def stop_leftovers(base: Path) -> None:
    """Teardown safety net: this deploy path's own processes only (SIGKILL
    of what its pid files still name; a stop that worked removed them)."""
    for pid_file in ("shared/service.pid", "shared/worker.pid", "nginx/nginx.pid"):
        kill_leftover(base / pid_file, str(base))


def test_a_worker_needs_redis_and_postgresql_refused_before_anything(tmp_path: Path) -> None:
    base = tmp_path / "srv"
    proc = run_deploy_script("deploy", "--local", str(base), "--role", "worker")
    assert proc.returncode == 1
    assert "PREDICT_QUEUE_URL" in proc.stderr and "PREDICT_TASKS_DB_URL" in proc.stderr
    assert "未做任何改动" in proc.stderr
    # Redis given, but the records in SQLite: the workers could not share them.
    env = write_env(tmp_path / "cluster.env", {"PREDICT_QUEUE_URL": "redis://127.0.0.1:1/0",
                                               "PREDICT_TASKS_DB_URL": "sqlite:////tmp/t.db"})
    proc = run_deploy_script("deploy", "--local", str(base), "--role", "worker",
                             "--env-file", str(env))
    assert proc.returncode == 1
    assert "PostgreSQL" in proc.stderr
    assert not base.exists()  # nothing uploaded, nothing created


@pytest.mark.parametrize(("args", "message"), [
    (["logs", "root@h1", "root@h2", "--follow"], "--follow 只能用于一台主机"),
    (["stop", "root@h1:/srv/a", "root@h1:/srv/a"], "目标重复"),
    (["stop", "root@h1", "--local", "/srv/a"], "--local"),
    (["deploy", "root@h1", "--role", "db"], "--role 只能是"),
])
def test_command_lines_that_make_no_sense_are_refused(args: list[str], message: str) -> None:
    proc = run_deploy_script(*args, "--ssh-port", "1", timeout=60)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "SSH" not in proc.stdout  # refused while the arguments are read


def test_status_of_several_hosts_goes_on_past_one_it_cannot_reach() -> None:
    proc = run_deploy_script("status", "root@h1.invalid", "root@h2.invalid:/srv/p",
                             "--ssh-port", "1", timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.count("检查 SSH 连接") == 2
    assert "汇总（2 台）" in proc.stdout
    assert "root@h2.invalid:/srv/p" in proc.stdout


def test_hosts_file_lines_are_checked(tmp_path: Path) -> None:
    hosts = tmp_path / "cluster.hosts"
    hosts.write_text("root@h1 api\nroot@h2 cook\n")
    proc = run_deploy_script("status", "--hosts-file", str(hosts), timeout=60)
    assert proc.returncode != 0
    assert "第 2 行" in proc.stderr and "cook" in proc.stderr
    hosts.write_text("root@h1 api\n")
    proc = run_deploy_script("status", "--hosts-file", str(hosts), "--role", "worker", timeout=60)
    assert proc.returncode != 0
    assert "没有角色为 worker 的主机" in proc.stderr


def test_no_host_is_touched_when_one_cannot_run_its_role(sshd: Sshd, tmp_path: Path) -> None:
    """The second host of the file is a worker, and the settings name no
    Redis: the deploy stops before it uploads anything -- to either host."""
    first, second = sshd.work / "p1" / "srv", sshd.work / "p2" / "srv"
    hosts = tmp_path / "cluster.hosts"
    hosts.write_text(f"root@127.0.0.1:{first} api\nroot@127.0.0.1:{second} worker\n")
    env = write_env(tmp_path / "cluster.env", {"PREDICT_MAX_WORKERS": "2"})
    proc = run_deploy_script("deploy", "--hosts-file", str(hosts), *sshd.ssh_args(),
                             "--env-file", str(env), "--source", str(sshd.source))
    assert proc.returncode == 1
    assert "PREDICT_QUEUE_URL" in proc.stderr
    assert f"root@127.0.0.1:{second} 未通过部署前检查" in proc.stderr
    assert "没有改动任何主机" in proc.stderr
    assert not first.exists() and not second.exists()


def test_one_command_deploys_an_api_host_and_a_worker_host(
        sshd: Sshd, pg: PgServer, queue: RedisServer, tmp_path: Path) -> None:
    api_base, worker_base = sshd.work / "h1" / "srv", sshd.work / "h2" / "srv"
    data = sshd.work / "nfs" / "prediction-data"  # created by the first deploy
    db = pg.create_database(next_database_name("roles"))
    token = secrets.token_hex(32)  # one for every API host behind a load balancer
    env = write_env(tmp_path / "cluster.env", {
        "PREDICT_QUEUE_URL": queue.url, "PREDICT_TASKS_DB_URL": db,
        "PREDICT_DATA_DIR": str(data), "PREDICT_MAX_WORKERS": "1",
        "PREDICT_CLEAN_INTERVAL_S": "3600", "PREDICT_API_TOKEN": token})
    hosts = tmp_path / "cluster.hosts"
    hosts.write_text(f"# the cluster\nroot@127.0.0.1:{api_base} api\n"
                     f"root@127.0.0.1:{worker_base} worker   # the worker machine\n")
    port = free_port()
    every = ["--hosts-file", str(hosts), *sshd.ssh_args()]
    try:
        proc = run_deploy_script("deploy", *every, "--env-file", str(env),
                                 "--source", str(sshd.source), "--port", str(port),
                                 "--host", "127.0.0.1", "--backend-port", str(free_port()),
                                 "--venv-from", str(sshd.venv), "--health-timeout", "90")
        assert proc.returncode == 0
        assert proc.stdout.count("部署成功") >= 2
        assert "执行进程 1 个" in proc.stdout
        # The worker host runs no nginx, no gunicorn, and needs no token.
        assert not (worker_base / "shared" / "service.pid").exists()
        assert not (worker_base / "nginx" / "nginx.pid").exists()
        assert not (worker_base / "shared" / "api_token").exists()
        assert not (api_base / "shared" / "worker.pid").exists()
        for base, role in ((api_base, "api"), (worker_base, "worker")):
            assert f"ROLE={role}" in (base / "shared" / "deploy.conf").read_text()
            settings = (base / "shared" / "service.env").read_text().splitlines()
            assert f"PREDICT_DATA_DIR={data}" in settings
            assert not any(ln.startswith("PREDICT_API_TOKEN=") for ln in settings)
        assert (api_base / "shared" / "api_token").read_text().strip() == token

        # The one RQ worker is the worker host's, and it runs as the service user.
        pool = int((worker_base / "shared" / "worker.pid").read_text())
        (listed,) = rq_workers(queue.url)
        assert descends_from(listed["pid"], pool), (listed, pool)

        # A task given to the API host is run by the worker host, on the shared files.
        grades = grade_workbook(tmp_path / "成绩.xlsx", 120, seed=41)
        with ApiClient(f"http://127.0.0.1:{port}", token=token, timeout=20) as client:
            task_id = client.start(grades, YEAR)
            final = client.wait(task_id, interval=0.3, timeout=120)
            assert final["status"] == "completed", final
            files = client.download_all(task_id, tmp_path / "dl")
        assert files
        conn = redis.Redis.from_url(queue.url)
        done = [Job.fetch(j, connection=conn) for j in
                FinishedJobRegistry(queue=Queue(NORMAL, connection=conn)).get_job_ids()
                if j.startswith(task_id)]
        assert [j.worker_name for j in done] == [listed["name"]]
        assert any(p.name.startswith(task_id) for p in (data / "results").iterdir())

        # Both hosts in one status, each with its role.
        status = run_deploy_script("status", *every)
        assert status.returncode == 0
        assert "角色:       api" in status.stdout and "角色:       worker" in status.stdout
        assert "Redis 登记: 正常 workers=1/1" in status.stdout
        assert status.stdout.count("正常") >= 3  # two health lines, and the summary
        logs = run_deploy_script("logs", f"root@127.0.0.1:{worker_base}", *sshd.ssh_args(),
                                 "--lines", "50")
        assert logs.returncode == 0
        assert f"event=task.completed task_id={task_id}" in logs.stdout

        # The workers only: the API host's line has another role and is left alone.
        stop = run_deploy_script("stop", *every, "--role", "worker")
        assert stop.returncode == 0
        assert not pid_alive(pool)
        assert rq_workers(queue.url) == []
        with ApiClient(f"http://127.0.0.1:{port}", token=token, timeout=10) as client:
            assert client.health()["status"] == "ok"

        stop = run_deploy_script("stop", *every)
        assert stop.returncode == 0
        assert "汇总（2 台）" in stop.stdout
        assert not port_open(port)
        assert not (api_base / "shared" / "service.pid").exists()
    finally:
        stop_leftovers(api_base)
        stop_leftovers(worker_base)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"
