"""docker-compose.yaml and the Dockerfile, checked without a Docker engine: the official Airflow 3
service set, this project's image, and the folders it mounts."""

import re

import yaml
from conftest import REPO

AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-cli"}


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_services_images_and_commands():
    services = _compose()["services"]
    assert set(services) == AIRFLOW_SERVICES | {"postgres"}
    assert services["postgres"]["image"].startswith("postgres:")
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == "api-server" and commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor" and commands["airflow-triggerer"] == "triggerer"
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        assert svc["image"] == "deeploc-airflow:local" and svc["build"] == ".", name
        assert svc["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow"), name
    assert services["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]  # not on every interface


def test_mounts_land_where_airflow_looks_and_every_service_shares_the_secrets():
    for name in AIRFLOW_SERVICES:
        svc = _compose()["services"][name]
        mounts = dict(v.split(":", 1) for v in svc["volumes"])
        assert mounts["./dags"] == "/opt/airflow/dags" and mounts["./plugins"] == "/opt/airflow/plugins", name
        assert mounts["airflow-secrets"] == "/opt/airflow/secrets", name
        env = svc["environment"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET_CMD"] == "cat /opt/airflow/secrets/jwt_secret", name
        assert env["AIRFLOW__API__SECRET_KEY_CMD"] == "cat /opt/airflow/secrets/api_secret_key", name
        assert env["AIRFLOW__CORE__FERNET_KEY_CMD"] == "cat /opt/airflow/secrets/fernet_key", name
        assert not {"AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"} & set(env), name
        if name != "airflow-init":  # everything waits for the init service
            assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name


def test_the_init_service_prepares_secrets_and_writable_folders(tmp_path):
    """The init command as compose runs it (as root, before the others): secrets made once and kept."""
    import json
    import os
    import subprocess
    import sys

    init = _compose()["services"]["airflow-init"]
    assert init["user"] == "0:0" and "deeploc_airflow.deploy_init" in init["command"][0]
    assert "--folder /opt/deeploc-data" in init["command"][0] and "airflow db migrate" in init["command"][0]
    cmd = [sys.executable, "-m", "deeploc_airflow.deploy_init", "--secrets", str(tmp_path / "s"),
           "--uid", "4321", "--folder", str(tmp_path / "data")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    secrets = {p.name: p.read_text() for p in (tmp_path / "s").iterdir()}
    subprocess.run(cmd, env=env, capture_output=True, check=True)
    assert {p.name: p.read_text() for p in (tmp_path / "s").iterdir()} == secrets  # kept, not remade
    assert len(secrets["jwt_secret"]) >= 60 and len(secrets["api_secret_key"]) >= 60 and len(secrets["fernet_key"]) == 44
    assert secrets["jwt_secret"] != secrets["api_secret_key"]
    assert json.loads(secrets["passwords.json"])["airflow"] in first.stdout
    if os.geteuid() == 0:
        assert (tmp_path / "data").stat().st_uid == 4321 and (tmp_path / "s" / "jwt_secret").stat().st_uid == 4321
    assert oct((tmp_path / "s" / "fernet_key").stat().st_mode & 0o777) == "0o600"


def test_image_matches_the_pins():
    dockerfile = (REPO / "Dockerfile").read_text()
    lock = (REPO / "requirements.txt").read_text()
    base = re.search(r"^FROM apache/airflow:([\d.]+)-python([\d.]+)$", dockerfile, re.M)
    assert base, "the image builds on the official Airflow image"
    assert f"apache-airflow=={base.group(1)}\n" in lock
    assert "requirements.txt" in dockerfile and "COPY --chown=airflow tasks" in dockerfile
    env = _compose()["services"]["airflow-scheduler"]["environment"]
    assert env["DEEPLOC_REQUIREMENTS"] == "/opt/deeploc/requirements.txt"  # where the Dockerfile puts the lock
    assert env["DEEPLOC_SOURCE"] == "/opt/deeploc" and "COPY --chown=airflow pyproject.toml /opt/deeploc/" in dockerfile
    assert "/opt/deeploc/requirements.txt" in dockerfile
    # The image has a JDK, so it builds the local file system jar and points the sessions at it.
    assert "openjdk-17-jdk-headless" in dockerfile
    built = re.search(r"^RUN \S*scripts/build_localfs_jar\.sh python (\S+)$", dockerfile, re.M)
    assert built and f"ENV DEEPLOC_LOCALFS_JAR={built.group(1)}" in dockerfile
