//! docs/xep-support.md against the code: every XEP row must be declared by a loaded module,
//! an attached service or the core list at the same version, and every declaration must have
//! a row. Run against a server started with its default services, so the table cannot drift.

use std::collections::BTreeMap;

use tern_testkit::TestServer;

fn table() -> BTreeMap<u16, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/xep-support.md");
    let text = std::fs::read_to_string(path).expect("docs/xep-support.md");
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| XEP-")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let num: u16 = cells[1][4..8]
            .parse()
            .unwrap_or_else(|_| panic!("bad XEP cell in {line}"));
        assert!(
            rows.insert(num, cells[2].to_owned()).is_none(),
            "XEP-{num:04} has two rows"
        );
    }
    rows
}

#[tokio::test]
async fn support_table_matches_the_declared_specs() {
    let s = TestServer::start().await.unwrap();
    let router = s.running.as_ref().unwrap().router.clone();
    let mut declared: BTreeMap<u16, String> = BTreeMap::new();
    for spec in router
        .specs()
        .into_iter()
        .chain(tern_server::CORE_SPECS.iter().copied())
    {
        if let Some(v) = declared.insert(spec.xep, spec.version.to_owned()) {
            assert_eq!(
                v, spec.version,
                "XEP-{:04} declared at two versions",
                spec.xep
            );
        }
    }
    let rows = table();
    let mut problems = Vec::new();
    for (num, v) in &declared {
        match rows.get(num) {
            None => problems.push(format!("XEP-{num:04} {v} is implemented but has no row")),
            Some(r) if r != v => {
                problems.push(format!("XEP-{num:04}: the table says {r}, the code {v}"))
            }
            _ => {}
        }
    }
    for (num, r) in &rows {
        if !declared.contains_key(num) {
            problems.push(format!(
                "XEP-{num:04} {r} has a row but nothing declares it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/xep-support.md drifted:\n{}",
        problems.join("\n")
    );
}
