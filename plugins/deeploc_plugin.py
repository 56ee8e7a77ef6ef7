"""The Airflow plugin of DeepLocations: the ingestion DAG's timetable (``deeploc_airflow.timetable``), the
read-only results app (a local lake's web map and metrics on the API server, under ``/deeploc``) and a
menu entry that opens the web map (``deeploc_airflow.links``)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from deeploc_airflow.links import results_app, URL_PREFIX
from deeploc_airflow.timetable import SliceTimetable


class DeepLocations(AirflowPlugin):
    name = "deeploc"
    timetables = [SliceTimetable]
    fastapi_apps = [{"app": results_app(), "url_prefix": URL_PREFIX, "name": "DeepLocations results"}]
    external_views = [{"name": "DeepLocations web map", "href": f"{URL_PREFIX}/lake/site/index.html",
                       "destination": "nav", "url_route": "deeploc-web-map"}]
