//! A snapshot file: the snapshot's metadata, then a RocksDB checkpoint of
//! the ledger store packed as a flat archive.
//!
//! ```text
//! "RUBLESNAP1" ‖ u32 BE meta_len ‖ meta (JSON: openraft's SnapshotMeta)
//! then per file: u16 BE name_len ‖ name ‖ u64 BE len ‖ bytes
//! then u16 0 (the end)
//! ```
//!
//! A checkpoint directory is flat (table files, MANIFEST, CURRENT, OPTIONS,
//! the WAL), so names carry no directories; a name with a `/`, `..` or a
//! NUL is refused when unpacking. The file is what openraft streams to a
//! lagging follower, chunk by chunk.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 10] = b"RUBLESNAP1";
/// Largest metadata record accepted (a membership of a few nodes is ~1 KiB).
const MAX_META: u32 = 1 << 20;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Writes the snapshot file `out`: `meta`, then every file of `dir`.
pub fn pack(dir: &Path, meta: &[u8], out: &Path) -> io::Result<()> {
    let mut w = BufWriter::new(File::create(out)?);
    w.write_all(MAGIC)?;
    w.write_all(&(meta.len() as u32).to_be_bytes())?;
    w.write_all(meta)?;
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        if !path.is_file() {
            return Err(invalid(format!("checkpoint holds a non-file {}", path.display())));
        }
        let name = name
            .to_str()
            .ok_or_else(|| invalid("checkpoint file name is not UTF-8"))?
            .as_bytes();
        let mut f = File::open(&path)?;
        let len = f.metadata()?.len();
        w.write_all(&(name.len() as u16).to_be_bytes())?;
        w.write_all(name)?;
        w.write_all(&len.to_be_bytes())?;
        let copied = io::copy(&mut (&mut f).take(len), &mut w)?;
        if copied != len {
            return Err(invalid(format!("{} shrank while packing", path.display())));
        }
    }
    w.write_all(&0u16.to_be_bytes())?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok(())
}

/// Reads the metadata at the start of a snapshot file.
pub fn read_meta(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut magic = [0u8; 10];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("not a ledger snapshot"));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_META {
        return Err(invalid("snapshot metadata too large"));
    }
    let mut meta = vec![0u8; len as usize];
    r.read_exact(&mut meta)?;
    Ok(meta)
}

/// Unpacks the snapshot file at `path` into the directory `dir` (created;
/// must not exist, every file synced). Returns the metadata.
pub fn unpack(path: &Path, dir: &Path) -> io::Result<Vec<u8>> {
    let mut r = BufReader::new(File::open(path)?);
    let meta = read_meta(&mut r)?;
    std::fs::create_dir(dir)?;
    loop {
        let mut n = [0u8; 2];
        r.read_exact(&mut n)?;
        let n = u16::from_be_bytes(n) as usize;
        if n == 0 {
            break;
        }
        let mut name = vec![0u8; n];
        r.read_exact(&mut name)?;
        let name = String::from_utf8(name).map_err(|_| invalid("file name is not UTF-8"))?;
        if name.contains('/') || name.contains('\0') || name == "." || name == ".." {
            return Err(invalid(format!("bad file name {name:?} in snapshot")));
        }
        let mut len = [0u8; 8];
        r.read_exact(&mut len)?;
        let len = u64::from_be_bytes(len);
        let mut f = File::create_new(dir.join(&name))?;
        let copied = io::copy(&mut (&mut r).take(len), &mut f)?;
        if copied != len {
            return Err(invalid(format!("snapshot ends inside {name}")));
        }
        f.sync_all()?;
    }
    let mut rest = [0u8; 1];
    if r.read(&mut rest)? != 0 {
        return Err(invalid("bytes after the end of the snapshot"));
    }
    File::open(dir)?.sync_all()?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_directory_unpacks_to_the_same_files() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("CURRENT"), b"MANIFEST-000005\n").unwrap();
        std::fs::write(src.join("000009.sst"), vec![7u8; 100_000]).unwrap();
        std::fs::write(src.join("empty"), b"").unwrap();
        let file = t.path().join("snap");
        pack(&src, b"{\"meta\":1}", &file).unwrap();
        assert_eq!(read_meta(&mut File::open(&file).unwrap()).unwrap(), b"{\"meta\":1}");
        let dst = t.path().join("dst");
        assert_eq!(unpack(&file, &dst).unwrap(), b"{\"meta\":1}");
        for name in ["CURRENT", "000009.sst", "empty"] {
            assert_eq!(
                std::fs::read(src.join(name)).unwrap(),
                std::fs::read(dst.join(name)).unwrap()
            );
        }
        assert_eq!(std::fs::read_dir(&dst).unwrap().count(), 3);
    }

    #[test]
    fn a_truncated_or_hostile_snapshot_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), vec![1u8; 1000]).unwrap();
        let file = t.path().join("snap");
        pack(&src, b"m", &file).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
        assert!(unpack(&file, &t.path().join("d1")).is_err());
        // A name that would escape the directory.
        let mut evil = Vec::new();
        evil.extend_from_slice(MAGIC);
        evil.extend_from_slice(&0u32.to_be_bytes());
        evil.extend_from_slice(&5u16.to_be_bytes());
        evil.extend_from_slice(b"../x1");
        evil.extend_from_slice(&0u64.to_be_bytes());
        evil.extend_from_slice(&0u16.to_be_bytes());
        std::fs::write(&file, &evil).unwrap();
        assert!(unpack(&file, &t.path().join("d2")).is_err());
        assert!(!t.path().join("x1").exists());
        std::fs::write(&file, b"not a snapshot at all").unwrap();
        assert!(unpack(&file, &t.path().join("d3")).is_err());
    }
}
