//! Migration between rings: the state (old, both, new), its switching and its file.

use crate::options::RouterOptions;
use crate::reload::ReloadError;
use crate::table::{MigrationState, RoutingTable};
use crate::Router;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;

/// Why a migration switch was refused.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// No migration key is configured, so switching is off.
    #[error("migration switching is disabled: no migration key is configured")]
    Disabled,
    /// The key is missing or wrong.
    #[error("invalid migration key")]
    BadKey,
    /// Both/new without a migration ring.
    #[error("cannot switch to {0}: the config has no <migration> ring")]
    NoMigrationRing(&'static str),
    /// The state could not be saved; nothing changed.
    #[error("cannot save the migration state to {path}: {source}")]
    Persist {
        /// The state file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Compares secrets in time that depends on their lengths only.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, &e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(!e) ^ e);
    }
    diff == 0
}

/// Writes `content` to `path` atomically: a temporary file beside it, fsync, rename, fsync
/// the directory.
fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The state saved in the state file, or `Old` when there is none.
pub(crate) fn restore(
    options: &RouterOptions,
    table: &RoutingTable,
) -> Result<MigrationState, ReloadError> {
    let Some(path) = &options.migration_state else {
        return Ok(MigrationState::Old);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MigrationState::Old),
        Err(e) => return Err(ReloadError::Migration(format!("{}: {e}", path.display()))),
    };
    let state = MigrationState::from_go_name(&text).ok_or_else(|| {
        ReloadError::Migration(format!(
            "{}: {:?} is not a migration state: expected msOldConfig, msBothConfigs or msNewConfig",
            path.display(),
            text.trim()
        ))
    })?;
    if state != MigrationState::Old && table.migration.is_none() {
        return Err(ReloadError::Migration(format!(
            "{}: the saved state is {} but the config has no <migration> ring",
            path.display(),
            state.go_name()
        )));
    }
    Ok(state)
}

impl Router {
    /// Switches the migration state, given the secret key; saves it before it takes
    /// effect, so a restart resumes it. Returns the state before the switch.
    pub fn switch_migration(
        &self,
        to: MigrationState,
        key: Option<&str>,
    ) -> Result<MigrationState, SwitchError> {
        let inner = &self.inner;
        let Some(expected) = &inner.options.migration_key else {
            return Err(SwitchError::Disabled);
        };
        if !same_secret(key.unwrap_or("").as_bytes(), expected.as_bytes()) {
            return Err(SwitchError::BadKey);
        }
        if to != MigrationState::Old && inner.table.load().migration.is_none() {
            return Err(SwitchError::NoMigrationRing(to.go_name()));
        }
        let _guard = inner
            .migration_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(path) = &inner.options.migration_state {
            write_atomically(path, to.go_name().as_bytes()).map_err(|source| {
                SwitchError::Persist {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        }
        let was = MigrationState::from_index(inner.migration.swap(to.as_index(), Ordering::SeqCst));
        inner.metrics.migration_state.set(i64::from(to.as_index()));
        tracing::warn!("migration state = {} (was {})", to.go_name(), was.go_name());
        Ok(was)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use photosrv_config::{Config, Roster, Settings};
    use std::path::PathBuf;

    const ONE_RING: &str =
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 http://a:1\n</shards>\n</dc1>\n</photosrv>\n";
    const TWO_RINGS: &str = "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 http://a:1\n</shards>\n</dc1>\n<migration>\n<dc1>\n<shards>\nshard1 http://b:1\n</shards>\n</dc1>\n</migration>\n</photosrv>\n";

    /// The state restored from a file holding `saved` (none when None), for `config_text`.
    fn restored(config_text: &str, saved: Option<&str>) -> Result<MigrationState, ReloadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        if let Some(saved) = saved {
            std::fs::write(&path, saved).unwrap();
        }
        restore_from(config_text, path)
    }

    fn restore_from(config_text: &str, path: PathBuf) -> Result<MigrationState, ReloadError> {
        let config = Config::parse(Path::new("t.cfg"), config_text.as_bytes()).unwrap();
        let flags = Settings {
            migration_state: Some(path),
            ..Settings::default()
        };
        let options = RouterOptions::resolve(&config, flags);
        let table = RoutingTable::build(&config, &Roster::all_live(), None, None).unwrap();
        restore(&options, &table)
    }

    #[test]
    fn the_saved_state_is_restored() {
        assert_eq!(restored(TWO_RINGS, None).unwrap(), MigrationState::Old);
        for state in [
            MigrationState::Old,
            MigrationState::Both,
            MigrationState::New,
        ] {
            // Go's file has no newline; one written by hand may.
            for saved in [state.go_name().to_owned(), format!("{}\n", state.go_name())] {
                assert_eq!(
                    restored(TWO_RINGS, Some(&saved)).unwrap(),
                    state,
                    "{saved:?}"
                );
            }
        }
        assert_eq!(
            restored(ONE_RING, Some("msOldConfig")).unwrap(),
            MigrationState::Old,
            "no migration ring is needed to stay on the old one"
        );
    }

    /// A state that cannot be read or used stops the router from starting (or a reload
    /// from taking effect) instead of quietly routing on the old ring.
    #[test]
    fn a_state_that_cannot_be_used_is_an_error() {
        let a_directory = tempfile::tempdir().unwrap();
        let errors = [
            restored(ONE_RING, Some("msBothConfigs")),
            restored(ONE_RING, Some("msNewConfig")),
            restored(TWO_RINGS, Some("both")),
            restored(TWO_RINGS, Some("")),
            restore_from(TWO_RINGS, a_directory.path().to_owned()),
        ];
        for error in errors {
            assert!(matches!(error, Err(ReloadError::Migration(_))), "{error:?}");
        }
    }

    #[test]
    fn the_state_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomically(&path, b"msBothConfigs").unwrap();
        write_atomically(&path, b"msNewConfig").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "msNewConfig");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state"], "no temporary file is left");
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3cretx", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
        assert!(!same_secret(b"S3cret", b"s3cret"));
    }
}
