//! The local-file state store: `./flotilla.state.json` by default.
//!
//! Why it is built this way:
//!
//! - **Atomic writes.** A new document is written to a uniquely named temporary file in the
//!   same directory, flushed to disk, then renamed over the state file, and the directory is
//!   synced. A crash or a kill at any point leaves either the old or the new document, never a
//!   torn one, and the state file never disappears (the backup is written from a copy, not by
//!   moving the current file away).
//! - **One backup.** Before the replace, the previous document is written (atomically too) to
//!   `<path>.backup`, which the "corrupt state" message points people to.
//! - **Compare-and-swap.** [`StateStore::write`] is conditional on the version last read (the
//!   serial and a SHA-256 digest of the file's bytes). The check and the replace run under the
//!   state lock, so a concurrent writer can never be overwritten; if this store does not hold
//!   the lock, a write takes it just for its own duration.
//! - **An OS file lock.** The lock is `File::try_lock` on `<path>.lock`, held by keeping that
//!   file open inside the store. The operating system drops it when the process ends, however it
//!   ends, so a killed `flotilla apply` never leaves the state blocked. The holder's
//!   [`LockInfo`] is written into the lock file so that a second process can say who holds it.
//! - **Refuse, never repair.** A corrupt, foreign or newer document is refused by
//!   `State::from_json` and never overwritten: a write against it fails the compare-and-swap.
//!
//! The store writes exactly the document it is given: raising `serial` (and keeping
//! `lineage`) is the caller's job. The contents of the state are never logged.

use flotilla_core::state::{BoxFuture, LockInfo, State, StateError, StateStore, StoredVersion};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// A state document in a local file.
///
/// Besides the file itself it uses `<path>.backup` (the previous version) and `<path>.lock`
/// (the OS lock and its holder's description), both next to it. Writes create short-lived
/// temporary files `.<name>.<pid>.<random>.tmp` in the same directory and remove them on
/// failure. The lock file is never deleted (deleting it while another process opens it would
/// let two processes each lock a different file); it is empty whenever no one holds the lock.
///
/// Locking: [`StateStore::lock`] fails with [`StateError::Locked`] naming the holder, also when
/// this store already holds a lock. [`StateStore::unlock`] with the held lock's id releases it;
/// with no lock held it does nothing. [`StateStore::force_unlock`] clears a lock whose process
/// has exited, but refuses one held by a running process: a local lock cannot be forced, it
/// ends with its process. A write without the lock takes it for the write's duration, so it is
/// refused with [`StateError::Locked`] while another store holds it.
#[derive(Debug)]
pub struct LocalStore {
    path: PathBuf,
    backup_path: PathBuf,
    lock_path: PathBuf,
    /// The lock this store holds, if any; the mutex also serialises writes in this process.
    held: Mutex<Option<HeldLock>>,
}

/// An OS lock held by keeping its file open.
#[derive(Debug)]
struct HeldLock {
    file: File,
    info: LockInfo,
}

impl LocalStore {
    /// A store for the state file at `path`. Nothing is touched until the first operation; a
    /// missing file reads as no state.
    pub fn new(path: impl Into<PathBuf>) -> LocalStore {
        let path = path.into();
        LocalStore {
            backup_path: sibling(&path, ".backup"),
            lock_path: sibling(&path, ".lock"),
            path,
            held: Mutex::new(None),
        }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the previous version is kept: `<path>.backup`.
    pub fn backup_path(&self) -> &Path {
        &self.backup_path
    }

    /// The lock file: `<path>.lock`.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    fn url_string(&self) -> String {
        self.path.display().to_string()
    }

    /// A storage error naming this state, with what to do in `message`.
    fn storage(&self, message: String, source: io::Error) -> StateError {
        StateError::Storage {
            url: self.url_string(),
            message,
            source: Some(Box::new(source)),
        }
    }

    /// The held-lock slot; a poisoned mutex is still usable (the slot is always consistent).
    fn held(&self) -> MutexGuard<'_, Option<HeldLock>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file's bytes, or `None` when there is no file.
    fn read_bytes(&self) -> Result<Option<Vec<u8>>, StateError> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::IsADirectory || self.path.is_dir() => Err(self
                .storage(
                    format!(
                        "is a directory; give the state file's path instead, such as {}",
                        self.path.join("flotilla.state.json").display()
                    ),
                    e,
                )),
            Err(e) => Err(self.storage(
                format!("cannot read it: {e}; check the path and its permissions"),
                e,
            )),
        }
    }

    fn read_now(&self) -> Result<Option<(State, StoredVersion)>, StateError> {
        let Some(bytes) = self.read_bytes()? else {
            return Ok(None);
        };
        let url = self.url_string();
        let text = std::str::from_utf8(&bytes).map_err(|e| StateError::Corrupt {
            url: url.clone(),
            message: format!("not UTF-8 text ({e})"),
        })?;
        let state = State::from_json(text, &url)?;
        let version = version_of(state.serial, &bytes);
        Ok(Some((state, version)))
    }

    fn write_now(
        &self,
        state: &State,
        expected: Option<&StoredVersion>,
    ) -> Result<StoredVersion, StateError> {
        let held = self.held();
        if held.is_some() {
            return self.write_locked(state, expected);
        }
        // Not locked by this store: hold the lock just for this write, so that the check and
        // the replace are one step for every flotilla process.
        let file = self.acquire(&LockInfo::new("write state"))?;
        let result = self.write_locked(state, expected);
        release(file);
        drop(held);
        result
    }

    /// The compare-and-swap and the atomic replace; the caller holds the lock.
    fn write_locked(
        &self,
        state: &State,
        expected: Option<&StoredVersion>,
    ) -> Result<StoredVersion, StateError> {
        let current = self.read_bytes()?;
        let unchanged = match (&current, expected) {
            (None, None) => true,
            (Some(bytes), Some(v)) => same_content(bytes, v),
            _ => false,
        };
        if !unchanged {
            return Err(StateError::Conflict {
                url: self.url_string(),
                expected: expected.map_or_else(
                    || "none, there was no state when it was read".to_string(),
                    |v| v.0.clone(),
                ),
            });
        }

        // Replace the file a symlink points to rather than the link itself.
        let target = self.resolve_target()?;
        let dir = parent_dir(&target);
        let text = state.to_json();
        let permissions = match &current {
            Some(_) => Some(
                fs::metadata(&target)
                    .map_err(|e| self.storage(format!("cannot read its permissions: {e}"), e))?
                    .permissions(),
            ),
            None => None,
        };

        let new = self.temp_with(&dir, &target, text.as_bytes(), permissions.as_ref())?;
        if let Some(previous) = &current {
            let backup_dir = parent_dir(&self.backup_path);
            let backup = self.temp_with(
                &backup_dir,
                &self.backup_path,
                previous,
                permissions.as_ref(),
            )?;
            backup.persist(&self.backup_path).map_err(|e| {
                self.storage(
                    format!(
                        "cannot write the backup {}: {e}; the state was not changed",
                        self.backup_path.display()
                    ),
                    e,
                )
            })?;
        }
        new.persist(&target).map_err(|e| {
            self.storage(
                format!("cannot replace the state file: {e}; the state was not changed"),
                e,
            )
        })?;
        sync_dir(&dir).map_err(|e| {
            self.storage(
                format!(
                    "the state was written but its directory {} could not be synced to disk: {e}",
                    dir.display()
                ),
                e,
            )
        })?;
        Ok(version_of(state.serial, text.as_bytes()))
    }

    /// The path to replace: the state file, or the file it links to.
    fn resolve_target(&self) -> Result<PathBuf, StateError> {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() => fs::canonicalize(&self.path).map_err(|e| {
                self.storage(
                    format!("is a symbolic link that cannot be followed: {e}; fix or remove it"),
                    e,
                )
            }),
            _ => Ok(self.path.clone()),
        }
    }

    /// A synced temporary file in `dir` holding `bytes`, to be renamed over `target`.
    fn temp_with(
        &self,
        dir: &Path,
        target: &Path,
        bytes: &[u8],
        permissions: Option<&fs::Permissions>,
    ) -> Result<TempFile, StateError> {
        let mut temp = TempFile::create(dir, target).map_err(|e| {
            self.storage(
                format!(
                    "cannot create a temporary file in {}: {e}; make sure the directory exists \
                     and is writable, or choose another state path",
                    dir.display()
                ),
                e,
            )
        })?;
        let written = (|| {
            if let Some(p) = permissions {
                temp.file.set_permissions(p.clone())?;
            }
            temp.file.write_all(bytes)?;
            temp.file.sync_all()
        })();
        written.map_err(|e| {
            self.storage(
                format!(
                    "cannot write {}: {e}; check free space and permissions (the state was not \
                     changed)",
                    temp.path.display()
                ),
                e,
            )
        })?;
        Ok(temp)
    }

    fn open_lock_file(&self, create: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&self.lock_path)
    }

    /// Takes the OS lock and records `info` in the lock file.
    fn acquire(&self, info: &LockInfo) -> Result<File, StateError> {
        let mut file = self.open_lock_file(true).map_err(|e| {
            self.storage(
                format!(
                    "cannot open the lock file {}: {e}; make sure its directory exists and is \
                     writable",
                    self.lock_path.display()
                ),
                e,
            )
        })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    url: self.url_string(),
                    holder: Box::new(self.read_holder()),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(self.storage(
                    format!(
                        "cannot lock {}: {e}; the filesystem must support file locks (put the \
                         state on a local disk)",
                        self.lock_path.display()
                    ),
                    e,
                ));
            }
        }
        let json = serde_json::to_string_pretty(info).unwrap_or_default();
        let recorded = (|| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(json.as_bytes())?;
            file.write_all(b"\n")?;
            file.flush()
        })();
        // On failure the file is dropped here, which releases the lock.
        recorded.map_err(|e| {
            self.storage(
                format!(
                    "cannot record the lock holder in {}: {e}",
                    self.lock_path.display()
                ),
                e,
            )
        })?;
        Ok(file)
    }

    /// Who holds the lock, from the lock file; "unknown" when it cannot be read.
    fn read_holder(&self) -> LockInfo {
        // The holder writes its description right after taking the lock; give it a moment.
        for _ in 0..10 {
            let mut text = String::new();
            let read = File::open(&self.lock_path).and_then(|mut f| f.read_to_string(&mut text));
            match read {
                Ok(_) if text.trim().is_empty() => std::thread::sleep(Duration::from_millis(20)),
                Ok(_) => {
                    if let Ok(info) = serde_json::from_str::<LockInfo>(&text) {
                        return info;
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        LockInfo::unknown()
    }

    fn lock_now(&self, info: &LockInfo) -> Result<(), StateError> {
        let mut held = self.held();
        if let Some(h) = held.as_ref() {
            return Err(StateError::Locked {
                url: self.url_string(),
                holder: Box::new(h.info.clone()),
            });
        }
        let file = self.acquire(info)?;
        *held = Some(HeldLock {
            file,
            info: info.clone(),
        });
        Ok(())
    }

    /// Rewrites the held lock's description with a new heartbeat time, so that a second
    /// process's "locked by …" message shows the holder is alive.
    fn heartbeat_now(&self, id: &str) -> Result<(), StateError> {
        let mut held = self.held();
        let Some(h) = held.as_mut().filter(|h| h.info.id == id) else {
            return Err(StateError::Storage {
                url: self.url_string(),
                message: format!("lock {id} is not held by this process; cannot renew it"),
                source: None,
            });
        };
        h.info = h.info.clone().beat();
        let json = serde_json::to_string_pretty(&h.info).unwrap_or_default();
        let file = &mut h.file;
        let written = (|| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(json.as_bytes())?;
            file.write_all(b"\n")?;
            file.flush()
        })();
        written.map_err(|e| {
            self.storage(
                format!(
                    "cannot renew the lock holder's heartbeat in {}: {e}",
                    self.lock_path.display()
                ),
                e,
            )
        })
    }

    fn unlock_now(&self, id: &str) -> Result<(), StateError> {
        let mut held = self.held();
        match held.take() {
            None => Ok(()),
            Some(h) if h.info.id == id => {
                release(h.file);
                Ok(())
            }
            Some(h) => {
                let message = format!(
                    "lock id {id} is not the lock this process holds ({}); nothing was unlocked",
                    h.info.id
                );
                *held = Some(h);
                Err(StateError::Storage {
                    url: self.url_string(),
                    message,
                    source: None,
                })
            }
        }
    }

    fn force_unlock_now(&self, id: &str) -> Result<(), StateError> {
        let mut held = self.held();
        if let Some(h) = held.take() {
            if h.info.id == id {
                release(h.file);
                return Ok(());
            }
            let message = format!(
                "this flotilla process holds lock {}, not {id}; nothing was unlocked",
                h.info.id
            );
            *held = Some(h);
            return Err(StateError::Storage {
                url: self.url_string(),
                message,
                source: None,
            });
        }
        let file = match self.open_lock_file(false) {
            Ok(f) => f,
            // No lock file: nothing is locked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(self.storage(
                    format!(
                        "cannot open the lock file {}: {e}",
                        self.lock_path.display()
                    ),
                    e,
                ));
            }
        };
        match file.try_lock() {
            // Free: the holder has exited. Clear whatever description it left.
            Ok(()) => {
                release(file);
                Ok(())
            }
            Err(TryLockError::WouldBlock) => {
                let holder = self.read_holder();
                let stop = match pid_of(&holder.who) {
                    Some(pid) => format!("stop that process (for example `kill {pid}`)"),
                    None => "stop that process".to_string(),
                };
                let other_id = if holder.id != id && holder.id != "unknown" {
                    format!(" Note: the lock's id is {}, not {id}.", holder.id)
                } else {
                    String::new()
                };
                Err(StateError::Storage {
                    url: self.url_string(),
                    message: format!(
                        "the lock is held by a running process, {} (operation: {}, since {}). A \
                         local state lock is an operating-system file lock: it is released the \
                         moment that process exits, so it cannot be forced. Wait for it to \
                         finish, or {stop} and run the command again.{other_id}",
                        holder.who, holder.operation, holder.created
                    ),
                    source: None,
                })
            }
            Err(TryLockError::Error(e)) => {
                Err(self.storage(format!("cannot lock {}: {e}", self.lock_path.display()), e))
            }
        }
    }
}

impl StateStore for LocalStore {
    fn url(&self) -> String {
        self.url_string()
    }

    fn lock<'a>(&'a self, info: &'a LockInfo) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move { self.lock_now(info) })
    }

    fn unlock<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move { self.unlock_now(id) })
    }

    fn force_unlock<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move { self.force_unlock_now(id) })
    }

    fn heartbeat<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move { self.heartbeat_now(id) })
    }

    fn read(&self) -> BoxFuture<'_, Result<Option<(State, StoredVersion)>, StateError>> {
        Box::pin(async move { self.read_now() })
    }

    fn write<'a>(
        &'a self,
        state: &'a State,
        expected: Option<&'a StoredVersion>,
    ) -> BoxFuture<'a, Result<StoredVersion, StateError>> {
        Box::pin(async move { self.write_now(state, expected) })
    }
}

impl Drop for LocalStore {
    /// Clears the holder's description when a store is dropped while locked; the OS lock goes
    /// with the file.
    fn drop(&mut self) {
        let held = self.held.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = held.take() {
            release(h.file);
        }
    }
}

/// Clears the lock file's description and releases the OS lock. Best effort: the lock is
/// released when the file closes anyway.
fn release(file: File) {
    let _ = file.set_len(0);
    let _ = file.unlock();
}

/// `<path><suffix>`, e.g. `flotilla.state.json.backup`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The version of a stored document: `<serial>:<sha256 of the file's bytes>`.
fn version_of(serial: u64, bytes: &[u8]) -> StoredVersion {
    StoredVersion(format!("{serial}:{}", digest_hex(bytes)))
}

/// Whether `bytes` are the document `version` was made from (the digest decides; the serial is
/// there for people reading messages).
fn same_content(bytes: &[u8], version: &StoredVersion) -> bool {
    version
        .0
        .rsplit_once(':')
        .is_some_and(|(_, digest)| digest == digest_hex(bytes))
}

fn digest_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// The pid in a [`LockInfo::who`] such as `ana@build-3 (pid 4242)`.
fn pid_of(who: &str) -> Option<u32> {
    who.rsplit_once("(pid ")?.1.strip_suffix(')')?.parse().ok()
}

/// Flushes a directory entry change (a rename) to disk. Windows has no directory handles to
/// sync; some filesystems refuse the call, which is not an error worth failing a write for.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        match File::open(dir).and_then(|d| d.sync_all()) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// A temporary file removed on drop unless persisted.
struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    /// A new, uniquely named file `.<target name>.<pid>.<random>.tmp` in `dir`.
    fn create(dir: &Path, target: &Path) -> io::Result<TempFile> {
        let name = target
            .file_name()
            .map_or_else(|| "state".into(), |n| n.to_string_lossy());
        let mut last = None;
        for _ in 0..8 {
            let random = uuid::Uuid::new_v4().simple().to_string();
            let path = dir.join(format!(
                ".{name}.{}.{}.tmp",
                std::process::id(),
                &random[..12]
            ));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        persisted: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no unique temporary file name")))
    }

    /// Renames it over `target`.
    fn persist(mut self, target: &Path) -> io::Result<()> {
        fs::rename(&self.path, target)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_digest() {
        let v = version_of(7, b"abc");
        assert!(v.0.starts_with("7:"));
        assert!(same_content(b"abc", &v));
        assert!(!same_content(b"abd", &v));
        assert!(!same_content(b"abc", &StoredVersion("garbage".to_string())));
    }

    #[test]
    fn pid_is_read_from_who() {
        assert_eq!(pid_of("ana@build-3 (pid 4242)"), Some(4242));
        assert_eq!(pid_of("unknown"), None);
    }

    #[test]
    fn siblings_and_parents() {
        assert_eq!(
            sibling(Path::new("./flotilla.state.json"), ".lock"),
            PathBuf::from("./flotilla.state.json.lock")
        );
        assert_eq!(parent_dir(Path::new("s.json")), PathBuf::from("."));
        assert_eq!(parent_dir(Path::new("/a/s.json")), PathBuf::from("/a"));
    }
}
