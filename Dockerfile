# Airflow 3 with this project's pinned dependencies, Java 17 for Spark, and the deeploc package.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless nodejs npm \
 && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow requirements.txt /opt/deeploc/requirements.txt
RUN pip install --no-cache-dir -r /opt/deeploc/requirements.txt
COPY --chown=airflow pyproject.toml /opt/deeploc/pyproject.toml
COPY --chown=airflow tasks /opt/deeploc/tasks
RUN pip install --no-cache-dir --no-deps /opt/deeploc
# The web map's libraries and the Natural Earth outlines (evaluate, publish), from the npm registry.
COPY --chown=airflow web/package.json web/package-lock.json /opt/deeploc/web/
RUN cd /opt/deeploc/web && npm ci --ignore-scripts --no-audit --no-fund
ENV DEEPLOC_WEB_ASSETS=/opt/deeploc/web/node_modules
# Local Spark without a chmod process per file written (README, Quick start).
COPY --chown=airflow scripts/build_localfs_jar.sh /opt/deeploc/scripts/build_localfs_jar.sh
RUN /opt/deeploc/scripts/build_localfs_jar.sh python /home/airflow/deeploc-localfs.jar
ENV DEEPLOC_LOCALFS_JAR=/home/airflow/deeploc-localfs.jar
