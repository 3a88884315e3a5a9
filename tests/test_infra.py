"""infra/: the Kubernetes manifests validate offline against the Kubernetes schemas, the CronJob
runs `regenerate` the way the issue asks, the mounted run config is a valid misomap config, and the
Helm values give workers the image and a GPU profile."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from misomap.config import config_from_dict

INFRA = Path(__file__).parents[1] / "infra"
K8S_VERSION = "1.33"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _by_kind() -> dict[str, dict]:
    return {d["kind"]: d for p in sorted((INFRA / "k8s").glob("*.yaml")) for d in _docs(p)}


@pytest.mark.parametrize("path", sorted((INFRA / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_validate_against_kubernetes_schemas(path):
    for doc in _docs(path):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_schema_validation_catches_a_broken_manifest():
    cron = _by_kind()["CronJob"]
    broken = yaml.safe_load(yaml.safe_dump(cron))
    broken["spec"]["concurrencyPolicy"] = 7
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_cronjob_runs_regenerate_safely():
    kinds = _by_kind()
    cron = kinds["CronJob"]
    job = cron["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    [container] = pod["containers"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid" and job["backoffLimit"] >= 1
    assert container["args"][container["args"].index("--config") - 1] == "regenerate"
    assert pod["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"]
    config_mount = next(v for v in pod["volumes"] if "configMap" in v)
    assert config_mount["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert set(secrets) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MISOMAP_GATEWAY_PASSWORD"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])


def test_mounted_run_config_is_a_valid_regenerate_config():
    data = yaml.safe_load(_by_kind()["ConfigMap"]["data"]["run.yaml"])
    cfg = config_from_dict(data, "infra/k8s/run-config.yaml")
    assert cfg.cube is not None and cfg.cube.area == "alaska"
    assert cfg.map is not None and cfg.publish is not None and cfg.gateway.address is not None
    assert "password" not in yaml.safe_dump(data).lower()


def test_gateway_values_give_workers_the_image_and_a_gpu_profile():
    values = yaml.safe_load((INFRA / "dask-gateway-values.yaml").read_text())
    image = values["gateway"]["backend"]["image"]
    cron_image = _by_kind()["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert f"{image['name']}:{image['tag']}" == cron_image
    profiles = values["gateway"]["extraConfig"]["misomap-profiles"]
    compile(profiles, "misomap-profiles", "exec")  # the chart runs it as Python
    assert '"nvidia.com/gpu": 1' in profiles and f"{image['name']}:{image['tag']}-cuda" in profiles


def test_dockerfile_is_multi_stage_with_a_cuda_base_argument():
    text = (INFRA / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) >= 2 and any(" AS build" in s for s in stages)
    assert "ARG BASE=" in text and "FROM ${BASE}" in text and "COPY --from=build" in text
