//! oslo's queue manager (`use_queue_manager`): stable names for reply and fanout queues.
//!
//! Names are `<hostname>:<processname>:<n>`, `n` counting the names given out by the processes
//! of one service generation (a process group, told apart from a recycled one by its leader's
//! start time). A restarted service counts from 1 again and so declares the queues it had
//! before, instead of leaving them to expire and creating new ones (costly at scale). The
//! counter is kept where oslo keeps it, `/dev/shm/<hostname>_<processname>_qmanager`, in
//! oslo's format (`<process group>:<n>:<start time>`), under an exclusive lock of
//! `<that file>.lock` (oslo locks a file of its own `lock_path`, so a Python and a Rust
//! process must not share a host and process name).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use messaging_core::{MessagingError, Result};
use rustix::fs::{flock, FlockOperation};

use crate::config::RabbitConfig;

/// Where oslo keeps the counters.
const SHM: &str = "/dev/shm";

/// Gives out the stable queue name suffixes of one host and process name.
#[derive(Debug, Clone)]
pub(crate) struct QueueManager {
    hostname: String,
    processname: String,
    dir: PathBuf,
}

/// The service generation the counter belongs to: process group and its leader's start time.
type Generation = (i32, u64);

impl QueueManager {
    /// The manager of `config`'s `hostname` (default: the machine's) and `processname`
    /// (default: the program's file name).
    pub(crate) fn new(config: &RabbitConfig) -> Self {
        let hostname = config.hostname.clone().unwrap_or_else(|| {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        });
        let processname = config
            .processname
            .clone()
            .unwrap_or_else(messaging_core::driver::program_name);
        Self::in_dir(hostname, processname, PathBuf::from(SHM))
    }

    fn in_dir(hostname: String, processname: String, dir: PathBuf) -> Self {
        Self {
            hostname,
            processname,
            dir,
        }
    }

    /// The next `<hostname>:<processname>:<n>`.
    pub(crate) fn next_name(&self) -> Result<String> {
        let path = self
            .dir
            .join(format!("{}_{}_qmanager", self.hostname, self.processname));
        let n =
            next_count(&path, current_generation()).map_err(|e| MessagingError::InvalidOption {
                option: "use_queue_manager".into(),
                value: "true".into(),
                reason: format!("cannot count queues in {}: {e}", path.display()),
            })?;
        Ok(format!("{}:{}:{n}", self.hostname, self.processname))
    }
}

/// Increment the counter in `path`, or start it at 1 for a new service generation.
fn next_count(path: &Path, generation: std::io::Result<Generation>) -> std::io::Result<u64> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = File::create(lock_path)?;
    flock(&lock, FlockOperation::LockExclusive)?;
    let generation = generation?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let count = match parse(&text) {
        Some((group, count, start)) if (group, start) == generation => count + 1,
        _ => 1,
    };
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}:{count}:{}", generation.0, generation.1)?;
    Ok(count)
    // The lock goes with `lock`.
}

/// `<process group>:<n>:<start time>`.
fn parse(text: &str) -> Option<(i32, u64, u64)> {
    let mut fields = text.trim().split(':');
    let group = fields.next()?.parse().ok()?;
    let count = fields.next()?.parse().ok()?;
    let start = fields.next()?.parse().ok()?;
    Some((group, count, start))
}

/// This process's group and the start time of its leader (this process when the group is 0,
/// as in some container runtimes), in clock ticks since boot, as oslo reads them. A leader
/// that has exited (a group started by a shell that is gone) has no start time to read; its
/// group id cannot be reused while the group lives, so the group alone tells the generation
/// (start time 0), the same in every process of the group (oslo fails there).
fn current_generation() -> std::io::Result<Generation> {
    let group: i32 = stat_field("self", 5)?;
    let leader = if group == 0 {
        std::process::id().to_string()
    } else {
        group.to_string()
    };
    match stat_field(&leader, 22) {
        Ok(start) => Ok((group, start)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((group, 0)),
        Err(e) => Err(e),
    }
}

/// Field `number` (counted from 1, as in proc(5)) of `/proc/<process>/stat`.
fn stat_field<T: std::str::FromStr>(process: &str, number: usize) -> std::io::Result<T> {
    let path = format!("/proc/{process}/stat");
    let stat = std::fs::read_to_string(&path)?;
    // The command name (field 2) may hold spaces and parentheses: count after its end.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(number - 3))
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("field {number} of {path} is unreadable")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_a_generation_and_restarts_with_a_new_one() {
        let dir = std::env::temp_dir().join(format!("qm_{}", messaging_core::wire::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manager = QueueManager::in_dir("h1".into(), "nova-api".into(), dir.clone());
        assert_eq!(manager.next_name().unwrap(), "h1:nova-api:1");
        assert_eq!(manager.next_name().unwrap(), "h1:nova-api:2");
        let other = QueueManager::in_dir("h1".into(), "nova-conductor".into(), dir.clone());
        assert_eq!(other.next_name().unwrap(), "h1:nova-conductor:1");
        // oslo's format, so that the file reads the same from Python.
        let text = std::fs::read_to_string(dir.join("h1_nova-api_qmanager")).unwrap();
        let (group, count, start) = parse(&text).unwrap();
        assert_eq!(count, 2);
        assert_eq!((group, start), current_generation().unwrap());
        // Another generation (the service restarted) counts from 1 again.
        let path = dir.join("h1_nova-api_qmanager");
        assert_eq!(next_count(&path, Ok((group + 1, start))).unwrap(), 1);
        assert_eq!(next_count(&path, Ok((group + 1, start))).unwrap(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn defaults_are_the_machine_and_the_program() {
        let manager = QueueManager::new(&RabbitConfig::default());
        assert!(!manager.hostname.is_empty());
        assert_eq!(manager.processname, messaging_core::driver::program_name());
        assert_eq!(manager.dir, Path::new(SHM));
    }
}
