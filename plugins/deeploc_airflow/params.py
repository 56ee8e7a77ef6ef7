"""The DAGs' run parameters, declared once. Empty values mean: the Variable, the environment, the
default (``settings.resolve``), so an Asset-triggered or scheduled run uses the deployment's settings."""

from __future__ import annotations

from airflow.sdk import Param

LOCATIONS = {
    "target": Param("", enum=["", "local", "aws"],
                    description="where stages run (empty: Variable deeploc_target / env DEEPLOC_TARGET / local)"),
    "lake": Param("", type="string", description="lake root, a folder or s3:// (empty: Variable / env / default)"),
    "bucket": Param("", type="string", description="image bucket root (empty: Variable / env / default)"),
    "cluster_id": Param("", type="string", description="aws: run the steps on this EMR cluster (empty: new ones)"),
}

INGESTION = {
    **LOCATIONS,
    "metadata": Param("", type="string", description="metadata files or glob (empty: Variable / env / default)"),
}

MODEL = {
    **LOCATIONS,
    "run": Param("", type="string", description="model run name (empty: the DAG run id)"),
    "image_set": Param("full", enum=["full", "removal"], description="every image, or those without faces"),
    "face_threshold": Param(0.035, type="number", minimum=0, maximum=1),
    "profile": Param("", enum=["", "demo", "yfcc"],
                     description="empty: Variable deeploc_profile / env DEEPLOC_PROFILE / demo"),
    "partitionings": Param("", type="string", description="name:tau_min:tau_max,... (empty: the profile's)"),
    "split_by": Param("user", enum=["user", "photo"],
                      description="user: a user's photos stay on one side; photo: the report's split by photo id"),
    "max_images": Param(0, type="integer", minimum=0, description="a stable sample of this many photos (0: all)"),
    "epochs": Param(0, type="integer", minimum=0, description="0: the profile's"),
    "backbone": Param("", type="string", description="empty: the profile's"),
    "learning_rate": Param(0, type="number", minimum=0, description="peak learning rate (0: the profile's)"),
    "batch_size": Param(0, type="integer", minimum=0, description="0: the profile's"),
    "crops": Param(1, enum=[1, 5], description="test-time crops per photo: 1 (centre) or 5 (centre and corners)"),
    "train_ami": Param("", type="string", description="aws: the training AMI (empty: Variable deeploc_aws)"),
    "train_instance_type": Param("", type="string", description="aws: empty: g5.2xlarge or the Variable's"),
    "train_timeout_hours": Param(0, type="integer", minimum=0, description="aws: 0: 36 or the Variable's"),
}
