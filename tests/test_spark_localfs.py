"""Local Spark sessions write through deeploc's Hadoop file system, which sets permissions in-process.

The modes must be exactly what Hadoop's own local file system gives (0644 files, 0755 folders under
the default umask), and modes java.nio cannot express (the sticky bit) must still be set.
"""

import os
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO

from deeploc.spark import LOCALFS_CLASS, localfs_jar


@pytest.fixture
def local_fs(spark):
    if localfs_jar() is None:
        pytest.skip("deeploc-localfs.jar is not built: ./dev builds it only where a JDK (javac) is installed")
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    return jvm, jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI("file:///"), conf)


def test_session_uses_the_in_process_file_system(local_fs):
    _, fs = local_fs
    assert fs.getClass().getName() == LOCALFS_CLASS


def test_written_files_and_folders_get_hadoops_default_modes(spark, local_fs, tmp_path):
    out = tmp_path / "t"
    spark.range(40).selectExpr("id", "cast(id % 4 as string) as month").write.partitionBy("month").parquet(str(out))
    modes = {}
    for root, dirs, files in os.walk(out):
        for name in dirs + files:
            p = os.path.join(root, name)
            modes[p] = stat.S_IMODE(os.stat(p).st_mode)
    parts = [p for p in modes if p.endswith(".parquet")]
    folders = [p for p in modes if os.path.isdir(p)]
    assert len(parts) >= 4 and len(folders) == 4
    assert {modes[p] for p in parts} == {0o644}
    assert {modes[p] for p in folders} == {0o755}


@pytest.mark.parametrize("mode", ["640", "1777", "000"])
def test_set_permission_sets_exactly_the_mode(local_fs, tmp_path, mode):
    jvm, fs = local_fs
    target = tmp_path / "f"
    target.mkdir()
    fs.setPermission(jvm.org.apache.hadoop.fs.Path(str(target)), jvm.org.apache.hadoop.fs.permission.FsPermission(mode))
    assert stat.S_IMODE(os.stat(target).st_mode) == int(mode, 8)
    target.chmod(0o755)  # so that pytest can clean it up


def test_build_script_makes_the_jar_or_says_there_is_no_jdk(tmp_path):
    script, jar = REPO / "scripts" / "build_localfs_jar.sh", tmp_path / "fs.jar"
    no_jdk = tmp_path / "bin"
    no_jdk.mkdir()
    for tool in ("bash", "dirname"):
        os.symlink(shutil.which(tool), no_jdk / tool)
    res = subprocess.run([str(script), sys.executable, str(jar)], env={"PATH": str(no_jdk)}, capture_output=True)
    assert res.returncode == 3 and not jar.exists()
    if shutil.which("javac") is None or shutil.which("jar") is None:
        pytest.skip("no JDK here to build the jar with")
    subprocess.run([str(script), sys.executable, str(jar)], check=True, timeout=120)
    with zipfile.ZipFile(jar) as z:
        assert "deeploc/hadoop/NioLocalFileSystem.class" in z.namelist()
