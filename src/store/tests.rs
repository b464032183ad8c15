use super::*;

const T: Duration = Duration::from_millis(1000);

#[test]
fn new_database_is_migrated_in_wal_mode_with_a_boot_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), T).unwrap();
    assert_eq!(store.schema_version().unwrap(), latest_schema_version());
    assert_eq!(store.boots_total().unwrap(), 1);
    assert!(!store.previous_boot_unclean());
    assert!(store.recovered_from().is_none());
    let mode: String = store
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn boots_accumulate_and_an_unclean_stop_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path(), T).unwrap();
    first.record_ready().unwrap();
    drop(first); // no clean stop: as after kill -9
    let second = Store::open(dir.path(), T).unwrap();
    assert!(second.previous_boot_unclean());
    second.record_clean_stop().unwrap();
    drop(second);
    let third = Store::open(dir.path(), T).unwrap();
    assert!(!third.previous_boot_unclean());
    assert_eq!(third.boots_total().unwrap(), 3);
}

#[test]
fn corrupt_database_is_moved_aside_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(DB_FILE);
    let garbage = b"this is not an SQLite database, but somebody's data".repeat(100);
    std::fs::write(&db, &garbage).unwrap();
    std::fs::write(dir.path().join("tutord.db-wal"), b"stale wal").unwrap();
    let store = Store::open(dir.path(), T).unwrap();
    let aside = store.recovered_from().expect("moved aside").to_path_buf();
    assert!(
        aside
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("tutord.db.corrupt-")
    );
    assert_eq!(std::fs::read(&aside).unwrap(), garbage);
    assert_eq!(
        std::fs::read(format!("{}-wal", aside.display())).unwrap(),
        b"stale wal"
    );
    assert_eq!(store.boots_total().unwrap(), 1);
}

#[test]
fn damaged_pages_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), T).unwrap();
        // Make the file several pages long, then checkpoint so the pages are in the main file.
        for _ in 0..200 {
            store
                .conn
                .execute(
                    "INSERT INTO boots (version, pid) VALUES (?1, 1)",
                    [&"x".repeat(200)],
                )
                .unwrap();
        }
        store
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let db = dir.path().join(DB_FILE);
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 8192);
    // Scribble over the second page (a b-tree page of `boots`).
    for b in &mut bytes[4096..8192] {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let store = Store::open(dir.path(), T).unwrap();
    assert!(store.recovered_from().is_some());
    assert_eq!(store.boots_total().unwrap(), 1);
}

#[test]
fn newer_schema_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    let err = Store::open(dir.path(), T).err().expect("refused");
    assert!(
        matches!(err, StoreError::TooNew { found: 999, .. }),
        "{err}"
    );
    assert!(dir.path().join(DB_FILE).exists());
}

#[test]
fn unwritable_state_dir_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = Store::open(&file.join("sub"), T).err().expect("error");
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
}

#[test]
fn turn_ids_go_on_from_the_highest_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), T).unwrap();
    assert_eq!(store.last_turn_number().unwrap(), 0);
    let s = store.session_start("maths").unwrap();
    // Numeric order, not text order: turn-12 is after turn-9.
    for id in ["turn-9", "turn-12", "turn-3"] {
        store.turn_asked(s.id, id, "text", "q").unwrap();
    }
    drop(store);
    let store = Store::open(dir.path(), T).unwrap();
    assert_eq!(store.last_turn_number().unwrap(), 12);
}

#[test]
fn a_schema_4_calibration_keeps_its_samples_and_gains_their_depth() {
    // A board's database from before schema 5: its calibration rows have no depth.
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        for sql in &schema::MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute(
            "INSERT INTO calibration (board, backend, model, bytes_per_token, flops_per_token, \
             bandwidth, compute, seconds_per_token, samples) \
             VALUES ('rock5b', 'cpu', 'm', 1e8, 2e8, 2e10, 1e11, 0.01, 4)",
            [],
        )
        .unwrap();
    }
    let store = Store::open(dir.path(), T).unwrap();
    assert_eq!(store.schema_version().unwrap(), 5);
    let rows = store.calibration_samples("rock5b").unwrap();
    assert_eq!(rows.len(), 1);
    let (backend, mut s) = rows[0].clone();
    assert_eq!((backend.as_str(), s.count, s.depth), ("cpu", 4, None));
    s.depth = Some(77.5);
    store.calibration_put("rock5b", "cpu", &s).unwrap();
    let (_, back) = &store.calibration_samples("rock5b").unwrap()[0];
    assert_eq!(back, &s);
}
