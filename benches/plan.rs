//! Resolve and plan a generated 1,000-node inventory (333 three-node PostgreSQL
//! clusters, 3 etcd members, one infra node). ci/bench.sh runs the same workload
//! through the binary, side by side with `ansible-inventory --list`.

use std::path::PathBuf;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use pigsty::compile::compile;
use pigsty::inventory::load_str;

fn inventory_1000() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("target/bench/inventory-1000.yml");
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let status = Command::new("python3")
            .arg(root.join("ci/gen-inventory.py"))
            .arg("333")
            .arg(&path)
            .status()
            .expect("running ci/gen-inventory.py");
        assert!(status.success(), "ci/gen-inventory.py failed");
    }
    std::fs::read_to_string(&path).unwrap()
}

fn bench(c: &mut Criterion) {
    let text = inventory_1000();
    let loaded = load_str("inventory-1000.yml", &text).expect("generated inventory is valid");
    assert_eq!(loaded.fleet.nodes.len(), 1000);

    let mut group = c.benchmark_group("inventory-1000");
    group.sample_size(20);
    group.bench_function("load+validate", |b| {
        b.iter(|| load_str("inventory-1000.yml", &text).unwrap())
    });
    group.bench_function("load+validate+plan+render all", |b| {
        b.iter(|| {
            let loaded = load_str("inventory-1000.yml", &text).unwrap();
            let fleet = &loaded.fleet;
            fleet
                .nodes
                .iter()
                .map(|n| compile(fleet, n).unwrap().plan.digest.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
