//! Property test: random get / return / detach / try_get / grow sequences against a simple model of the pool.
//!
//! On one thread the pool must behave exactly like the model: a get reuses an idle object when there is one and
//! creates one otherwise; a return keeps the object when fewer than `capacity` are idle and it passes the retain
//! check, and drops it otherwise. Every object handed out must have been reset.

use otlp_pool::{Pool, PoolStats, Pooled};
use proptest::prelude::*;

#[derive(Debug, Default)]
struct Obj {
    dirty: bool,
    big: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Get,
    TryGet,
    Return(usize),
    Detach(usize),
    Grow(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Get),
        1 => Just(Op::TryGet),
        4 => any::<usize>().prop_map(Op::Return),
        1 => any::<usize>().prop_map(Op::Detach),
        1 => any::<usize>().prop_map(Op::Grow),
    ]
}

#[derive(Debug, Default)]
struct Model {
    idle: u64,
    gets: u64,
    misses: u64,
    puts: u64,
    discards: u64,
    detached: u64,
}

impl Model {
    fn expect(&self, capacity: u64) -> PoolStats {
        PoolStats {
            gets: self.gets,
            misses: self.misses,
            puts: self.puts,
            discards: self.discards,
            detached: self.detached,
            idle: self.idle,
            capacity,
        }
    }
}

fn run(
    capacity: usize,
    thread_cache: usize,
    prefill: usize,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let pool = Pool::builder("model", Obj::default)
        .capacity(capacity)
        .thread_cache(thread_cache)
        .prefill(prefill)
        .retain(|o: &Obj| !o.big)
        .reset(|o: &mut Obj| o.dirty = false)
        .build()
        .expect("valid configuration");
    let mut model = Model {
        idle: prefill as u64,
        ..Model::default()
    };
    let mut held: Vec<Pooled<'_, Obj>> = Vec::new();
    for op in ops {
        match op {
            Op::Get | Op::TryGet => {
                let obj = if matches!(op, Op::Get) {
                    Some(pool.get())
                } else {
                    pool.try_get()
                };
                match obj {
                    Some(mut obj) => {
                        prop_assert!(!obj.dirty, "an object was handed out without its reset");
                        prop_assert!(!obj.big);
                        model.gets += 1;
                        if model.idle > 0 {
                            model.idle -= 1;
                        } else {
                            prop_assert!(matches!(op, Op::Get), "try_get created an object");
                            model.misses += 1;
                        }
                        obj.dirty = true;
                        held.push(obj);
                    }
                    None => prop_assert_eq!(
                        model.idle,
                        0,
                        "try_get found nothing while objects were idle"
                    ),
                }
            }
            Op::Return(i) if !held.is_empty() => {
                let obj = held.swap_remove(i % held.len());
                if obj.big || model.idle == capacity as u64 {
                    model.discards += 1;
                } else {
                    model.puts += 1;
                    model.idle += 1;
                }
                drop(obj);
            }
            Op::Detach(i) if !held.is_empty() => {
                let obj = held.swap_remove(i % held.len()).detach();
                prop_assert!(obj.dirty);
                model.detached += 1;
            }
            Op::Grow(i) if !held.is_empty() => {
                let n = held.len();
                held[i % n].big = true;
            }
            _ => {}
        }
        let stats = pool.stats();
        prop_assert_eq!(stats, model.expect(capacity as u64));
        prop_assert!(stats.idle <= stats.capacity);
        prop_assert_eq!(stats.gets, stats.misses + stats.reuses());
    }
    // Everything still held goes back; every object is accounted for as kept or discarded.
    drop(held);
    let s = pool.stats();
    prop_assert_eq!(s.gets, s.puts + s.discards + s.detached);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]

    #[test]
    fn pool_matches_model(
        capacity in 1usize..40,
        thread_cache in prop_oneof![Just(0usize), 1usize..8, Just(32usize)],
        prefill_pct in 0usize..=100,
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let prefill = capacity * prefill_pct / 100;
        run(capacity, thread_cache, prefill, ops)?;
    }
}
