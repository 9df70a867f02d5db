//! Two `rotor rotate` processes on one vault with overlapping scopes: the lease in the store
//! keeps every credential to one rotation at a time. A credential the other process holds is
//! skipped with a clear reason; every account ends with a working password that the vault
//! holds as current.

use std::process::Stdio;

use crate::lab::Lab;
use crate::support::{Rotor, creds, json};

#[test]
fn two_rotations_on_overlapping_scopes_never_rotate_a_credential_twice_at_once() {
    let lab = Lab::start(8);
    let rotor = Rotor::init();
    let inv = lab.inventory_path();
    let inv = inv.to_str().unwrap();
    // Concurrency 1 makes both runs long enough to overlap on the odd hosts.
    let spawn = |scope: &[&str]| {
        let mut args = vec![
            "rotate",
            "-i",
            inv,
            "--concurrency",
            "1",
            "--output",
            "json",
        ];
        args.extend_from_slice(scope);
        rotor
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn(&["--all"]);
    let b = spawn(&["--scope", "group:odd"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ra, rb) = (json(&a), json(&b));

    // Each run either rotated a credential or skipped it because the other held it.
    for report in [&ra, &rb] {
        for r in report["results"].as_array().unwrap() {
            match r["result"].as_str().unwrap() {
                "committed" => {}
                "skipped" => {
                    assert_eq!(r["reason"], "busy", "{r:#}");
                    assert!(
                        r["detail"]
                            .as_str()
                            .unwrap()
                            .contains("another rotor process")
                    );
                }
                other => panic!("unexpected result {other}: {r:#}"),
            }
        }
    }

    // No two rotations of one credential overlap in time (the ledger's start and last
    // update of each rotation).
    let db = rusqlite::Connection::open(rotor.vault_dir().join("rotor.db")).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT c.cred, r.started_at, r.updated_at FROM rotations r
             JOIN credentials c ON c.id = r.credential_id ORDER BY c.cred, r.started_at",
        )
        .unwrap();
    let rows: Vec<(String, String, String)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut n_twice = 0;
    for pair in rows.windows(2) {
        let ((c1, _, end1), (c2, start2, _)) = (&pair[0], &pair[1]);
        if c1 == c2 {
            n_twice += 1;
            // RFC 3339 UTC with fixed precision: string order is time order.
            assert!(
                end1 <= start2,
                "{c1}: rotations overlap ({end1} > {start2})"
            );
        }
    }
    // The runs overlapped on some credential, or the test proved nothing.
    let n_skipped = [&ra, &rb]
        .iter()
        .map(|r| r["counts"]["skipped"].as_u64().unwrap())
        .sum::<u64>();
    eprintln!(
        "credentials rotated by both runs (one after the other): {n_twice}; skipped as busy: {n_skipped}"
    );
    assert!(n_twice + n_skipped as usize > 0, "the two runs never met");

    for (host, account) in creds(&lab) {
        let current = rotor.show(&format!("{host}/{account}")).unwrap();
        assert!(
            lab.login_works(&host, &account, &current),
            "{host}/{account}"
        );
    }
}
