//! Sessions' turns read by page and by recency, and the retention of old sessions.

use super::*;

const T: Duration = Duration::from_millis(1000);
/// 2025-06-15T00:00:00Z: every age below is counted back from it.
const NOW: i64 = 1_749_945_600;
const DAY: i64 = 86_400;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), T).unwrap();
    (dir, store)
}

/// Stores an answered turn; returns its row.
fn answered(store: &Store, session: i64, n: usize, question: &str, answer: &str) -> i64 {
    let row = store
        .turn_asked(session, &format!("turn-{n}"), "text", question)
        .unwrap();
    let end = TurnEnd {
        answer,
        ..TurnEnd::default()
    };
    store.turn_finished(row, &end).unwrap();
    row
}

fn questions(rows: &[TurnRow]) -> Vec<&str> {
    rows.iter().map(|t| t.question.as_str()).collect()
}

fn session_ids(store: &Store) -> Vec<i64> {
    let mut stmt = store
        .conn
        .prepare("SELECT id FROM sessions ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn turns_total(store: &Store) -> i64 {
    store
        .conn
        .query_row("SELECT count(*) FROM turns", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn history_pages_count_back_from_the_newest_turn_and_read_oldest_first() {
    let (_dir, store) = store();
    let s = store.session_start("maths").unwrap();
    let other = store.session_start("history").unwrap();
    for n in 1..=7 {
        answered(&store, s.id, n, &format!("q{n}"), "a");
    }
    answered(&store, other.id, 8, "elsewhere", "a");
    let page = |offset, limit| store.turns_page(s.id, offset, limit).unwrap();
    assert_eq!(questions(&page(0, 3)), ["q5", "q6", "q7"]);
    assert_eq!(questions(&page(3, 3)), ["q2", "q3", "q4"]);
    assert_eq!(questions(&page(6, 3)), ["q1"]);
    assert!(page(7, 3).is_empty());
    assert_eq!(questions(&page(0, 100)).len(), 7);
    assert!(store.turns_page(999, 0, 10).unwrap().is_empty());
}

#[test]
fn a_long_session_resumes_from_its_newest_answered_turns_only() {
    let (_dir, store) = store();
    let s = store.session_start("a long lesson").unwrap();
    let tx = store.conn.unchecked_transaction().unwrap();
    // 1000 turns of exactly 64 bytes each (5 of question, 59 of answer).
    for n in 0..1000 {
        answered(&store, s.id, n, &format!("q{n:04}"), &format!("{n:059}"));
    }
    tx.commit().unwrap();
    // After them: unanswered, aborted and failed turns never reached the model's context.
    store.turn_asked(s.id, "turn-1000", "text", "cut").unwrap();
    let aborted = store.turn_asked(s.id, "turn-1001", "text", "stop").unwrap();
    let end = TurnEnd {
        answer: "partial",
        aborted: true,
        ..TurnEnd::default()
    };
    store.turn_finished(aborted, &end).unwrap();
    let failed = store.turn_asked(s.id, "turn-1002", "text", "boom").unwrap();
    let end = TurnEnd {
        error: Some("the engine worker died"),
        ..TurnEnd::default()
    };
    store.turn_finished(failed, &end).unwrap();

    // Ten turns' worth of bytes: the newest ten.
    let tail = store.recent_turns(s.id, 1000, 640).unwrap();
    assert_eq!(
        questions(&tail),
        [
            "q0990", "q0991", "q0992", "q0993", "q0994", "q0995", "q0996", "q0997", "q0998",
            "q0999"
        ]
    );
    assert_eq!(
        tail[9].answer.as_deref(),
        Some(format!("{:059}", 999).as_str())
    );
    // One byte short of ten turns: nine (a turn is never cut in half).
    assert_eq!(store.recent_turns(s.id, 1000, 639).unwrap().len(), 9);
    // The turn count bounds it too.
    assert_eq!(
        questions(&store.recent_turns(s.id, 3, usize::MAX).unwrap()),
        ["q0997", "q0998", "q0999"]
    );
    assert!(store.recent_turns(s.id, 1000, 10).unwrap().is_empty());
}

/// Sets when session `id` started and ended, in days before `NOW` (None: never ended).
fn aged(store: &Store, id: i64, started_days: i64, ended_days: Option<i64>) {
    let at = |days: i64| -> String {
        store
            .conn
            .query_row(
                "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1, 'unixepoch')",
                [NOW - days * DAY],
                |r| r.get(0),
            )
            .unwrap()
    };
    store
        .conn
        .execute(
            "UPDATE sessions SET started_at = ?2, ended_at = ?3 WHERE id = ?1",
            rusqlite::params![id, at(started_days), ended_days.map(at)],
        )
        .unwrap();
}

/// Five sessions: ended 400, 300, 200 and 10 days ago, and an open one started 2 days ago,
/// with 2, 1, 0, 3 and 1 turns.
fn five_sessions() -> (tempfile::TempDir, Store) {
    let (dir, store) = store();
    let mut n = 0;
    for (days, turns) in [(400, 2), (300, 1), (200, 0), (10, 3), (1, 1)] {
        let s = store.session_start("maths").unwrap();
        let ended = (days > 1).then_some(days);
        aged(&store, s.id, days + 1, ended);
        for _ in 0..turns {
            n += 1;
            answered(&store, s.id, n, "q", "a");
        }
    }
    assert_eq!(session_ids(&store), [1, 2, 3, 4, 5]);
    assert_eq!(turns_total(&store), 7);
    (dir, store)
}

#[test]
fn sessions_older_than_keep_days_go_with_their_turns() {
    let (_dir, store) = five_sessions();
    let keep = Retention {
        keep_days: 365,
        keep_sessions: 1000,
    };
    let pruned = store.prune_sessions(keep, NOW, Some(5)).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            sessions: 1,
            turns: 2
        }
    );
    assert_eq!(session_ids(&store), [2, 3, 4, 5]);
    assert_eq!(turns_total(&store), 5);
    // Nothing more to do: a second pass removes nothing.
    assert_eq!(
        store.prune_sessions(keep, NOW, Some(5)).unwrap(),
        Pruned::default()
    );
    // Age counts from a session's end: session 4, ended exactly 10 days ago, stays
    // today and goes tomorrow.
    let keep = Retention {
        keep_days: 10,
        keep_sessions: 0,
    };
    let pruned = store.prune_sessions(keep, NOW, Some(5)).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            sessions: 2,
            turns: 1
        }
    );
    assert_eq!(session_ids(&store), [4, 5]);
    let pruned = store.prune_sessions(keep, NOW + DAY, Some(5)).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            sessions: 1,
            turns: 3
        }
    );
    assert_eq!(session_ids(&store), [5]);
}

#[test]
fn only_the_newest_keep_sessions_stay_besides_the_one_in_use() {
    let (_dir, store) = five_sessions();
    let keep = Retention {
        keep_days: 0,
        keep_sessions: 2,
    };
    // Session 2 is in use (say it was resumed): it stays beside the newest two.
    let pruned = store.prune_sessions(keep, NOW, Some(2)).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            sessions: 2,
            turns: 2
        }
    );
    assert_eq!(session_ids(&store), [2, 4, 5]);
    let pruned = store.prune_sessions(keep, NOW, None).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            sessions: 1,
            turns: 1
        }
    );
    assert_eq!(session_ids(&store), [4, 5]);
    assert_eq!(turns_total(&store), 4);
}

#[test]
fn keep_forever_removes_nothing_and_ids_are_never_used_twice() {
    let (_dir, store) = five_sessions();
    let forever = Retention {
        keep_days: 0,
        keep_sessions: 0,
    };
    assert_eq!(
        store
            .prune_sessions(forever, NOW + 9999 * DAY, None)
            .unwrap(),
        Pruned::default()
    );
    assert_eq!(session_ids(&store), [1, 2, 3, 4, 5]);
    // A new, empty session 6; a year later everything is old. Session 6 (the newest) and
    // session 5 (the newest turn, turn-7) stay, so the next session is 7 and turns go on
    // after turn-7.
    let six = store.session_start("maths").unwrap();
    assert_eq!(six.id, 6);
    let keep = Retention {
        keep_days: 30,
        keep_sessions: 0,
    };
    let pruned = store.prune_sessions(keep, NOW + 365 * DAY, None).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            sessions: 4,
            turns: 6
        }
    );
    assert_eq!(session_ids(&store), [5, 6]);
    assert_eq!(store.last_turn_number().unwrap(), 7);
    assert_eq!(store.session_start("maths").unwrap().id, 7);
}
