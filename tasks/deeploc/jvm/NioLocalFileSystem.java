package deeploc.hadoop;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's local file system ("file:") with permissions set through java.nio.
 *
 * <p>Without the native libhadoop (pip's pyspark does not ship it) Hadoop sets a permission by
 * starting a "chmod" process, and it does so for every directory and every file it creates (the
 * data file and its .crc). A Spark write of one table partitioned by month then starts hundreds of
 * processes: about 10 ms per file written on a 2-core machine. java.nio does the same in a system call.
 * Used by deeploc.spark.session() for local sessions only; clusters keep their own file systems.
 */
public class NioLocalFileSystem extends LocalFileSystem {

  public NioLocalFileSystem() {
    super(new Raw());
  }

  /** The raw (checksum-less) layer under LocalFileSystem, where the permission calls land. */
  public static class Raw extends RawLocalFileSystem {
    // PosixFilePermission for each mode bit, lowest bit first (o+x, o+w, o+r, g+x, ...).
    private static final PosixFilePermission[] BITS = {
      PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_READ,
      PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_READ,
      PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_READ,
    };

    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
      int mode = permission.toShort();
      if ((mode & ~0777) != 0) {  // sticky, setuid, setgid: beyond java.nio, so Hadoop's own way
        super.setPermission(p, permission);
        return;
      }
      Set<PosixFilePermission> perms = EnumSet.noneOf(PosixFilePermission.class);
      for (int i = 0; i < BITS.length; i++) {
        if ((mode & (1 << i)) != 0) {
          perms.add(BITS[i]);
        }
      }
      Files.setPosixFilePermissions(pathToFile(p).toPath(), perms);
    }
  }
}
