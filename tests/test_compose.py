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


def test_mounts_exist_and_land_where_airflow_looks():
    for name in AIRFLOW_SERVICES:
        mounts = dict(v.split(":", 1) for v in _compose()["services"][name]["volumes"])
        assert mounts["./dags"] == "/opt/airflow/dags" and mounts["./plugins"] == "/opt/airflow/plugins", name
        assert (REPO / "dags").is_dir() and (REPO / "plugins" / "deeploc_airflow").is_dir()


def test_image_matches_the_pins():
    dockerfile = (REPO / "Dockerfile").read_text()
    lock = (REPO / "requirements.txt").read_text()
    base = re.search(r"^FROM apache/airflow:([\d.]+)-python([\d.]+)$", dockerfile, re.M)
    assert base, "the image builds on the official Airflow image"
    assert f"apache-airflow=={base.group(1)}\n" in lock
    assert "requirements.txt" in dockerfile and "COPY --chown=airflow tasks" in dockerfile
    env = _compose()["services"]["airflow-scheduler"]["environment"]
    assert env["DEEPLOC_REQUIREMENTS"] == "/opt/deeploc/requirements.txt"  # where the Dockerfile puts the lock
    assert "/opt/deeploc/requirements.txt" in dockerfile
    # The image has a JDK, so it builds the local file system jar and points the sessions at it.
    assert "openjdk-17-jdk-headless" in dockerfile
    built = re.search(r"^RUN \S*scripts/build_localfs_jar\.sh python (\S+)$", dockerfile, re.M)
    assert built and f"ENV DEEPLOC_LOCALFS_JAR={built.group(1)}" in dockerfile
