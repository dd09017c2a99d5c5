//! Byte-slice accounting: every size class keeps `gets = puts + discards + detached + in use`, whatever the
//! buffers do between get and return (grow past their class, past the largest class, get detached), and a buffer
//! above the largest class is never kept.

use otlp_pool::{ByteSlice, ByteSlicePool, PoolStats};
use proptest::prelude::*;

const MIN: usize = 16;
const MAX: usize = 256;

fn pool(capacity_per_class: usize) -> ByteSlicePool {
    ByteSlicePool::builder("accounting")
        .classes(MIN, MAX)
        .capacity_per_class(capacity_per_class)
        .build()
        .expect("valid classes")
}

/// The class a `get(len)` is counted on: the smallest that fits, or the largest for a `len` above it.
fn class_of_get(len: usize) -> usize {
    len.next_power_of_two().clamp(MIN, MAX)
}

fn classes() -> impl Iterator<Item = usize> {
    (MIN.trailing_zeros()..=MAX.trailing_zeros()).map(|shift| 1 << shift)
}

fn class(pool: &ByteSlicePool, size: usize) -> PoolStats {
    pool.class_stats(size).expect("a class of the pool")
}

/// `gets - puts - discards - detached` of each class, signed so that a class that lost track shows up negative.
fn in_use_by_class(pool: &ByteSlicePool) -> Vec<(usize, i128)> {
    classes()
        .map(|size| {
            let s = class(pool, size);
            let in_use = i128::from(s.gets)
                - i128::from(s.puts)
                - i128::from(s.discards)
                - i128::from(s.detached);
            (size, in_use)
        })
        .collect()
}

fn assert_in_use(pool: &ByteSlicePool, held_lens: &[usize]) {
    let expected: Vec<(usize, i128)> = classes()
        .map(|size| {
            let n = held_lens
                .iter()
                .filter(|&&len| class_of_get(len) == size)
                .count();
            (size, n as i128)
        })
        .collect();
    assert_eq!(in_use_by_class(pool), expected, "per-class in use");
}

#[test]
fn a_buffer_that_grew_past_its_class_is_counted_on_the_class_it_was_got_from() {
    let pool = pool(8);
    let mut small = pool.get(10);
    assert_eq!(small.size_class(), Some(16));
    small.extend_from_slice(&[1; 100]); // grew into the 128 class
    assert_in_use(&pool, &[10]);
    drop(small);
    assert_in_use(&pool, &[]);
    let s16 = class(&pool, 16);
    assert_eq!((s16.gets, s16.puts + s16.discards), (1, 1), "{s16:?}");
    // The 128 class never handed that buffer out: it has nothing to account for.
    let s128 = class(&pool, 128);
    assert_eq!(
        s128.gets + s128.puts + s128.discards + s128.idle,
        0,
        "{s128:?}"
    );
}

#[test]
fn detaching_a_grown_buffer_counts_on_its_get_class() {
    let pool = pool(8);
    let mut buffer = pool.get(20);
    buffer.extend_from_slice(&[0; 200]); // 32 class -> 256 class by capacity
    let vec = buffer.detach();
    assert!(vec.capacity() >= 200);
    assert_in_use(&pool, &[]);
    let s32 = class(&pool, 32);
    assert_eq!((s32.gets, s32.detached), (1, 1), "{s32:?}");
    assert_eq!(class(&pool, 256).detached, 0);
}

#[test]
fn detaching_an_oversize_buffer_is_counted() {
    let pool = pool(8);
    let buffer = pool.get(MAX * 4);
    assert_eq!(
        buffer.size_class(),
        None,
        "an oversize buffer returns to no class"
    );
    drop(buffer.detach());
    assert_in_use(&pool, &[]);
    let largest = class(&pool, MAX);
    assert_eq!(
        (largest.gets, largest.misses, largest.detached),
        (1, 1, 1),
        "{largest:?}"
    );
}

#[test]
fn a_buffer_between_the_largest_class_and_twice_it_is_never_kept() {
    let pool = pool(8);
    for len in [MAX + 1, MAX + MAX / 2, 2 * MAX - 1] {
        let buffer = pool.get(len);
        assert!(buffer.capacity() > MAX);
        assert_eq!(buffer.size_class(), None, "len {len}: returns to no class");
        drop(buffer);
    }
    // A buffer of the largest class that grew past it is not kept either.
    let mut grown = pool.get(MAX);
    assert_eq!(grown.size_class(), Some(MAX));
    grown.extend_from_slice(&[0; MAX + 1]);
    assert_eq!(grown.size_class(), None);
    drop(grown);
    let largest = class(&pool, MAX);
    assert_eq!(largest.idle, 0, "oversize buffers were kept: {largest:?}");
    assert_eq!((largest.gets, largest.discards), (4, 4), "{largest:?}");
    // The next get of the largest class finds nothing pinned.
    let again = pool.get(MAX);
    assert_eq!(again.capacity(), MAX);
    assert_eq!(class(&pool, MAX).misses, 5);
}

#[test]
fn a_buffer_that_stayed_in_its_class_is_kept_and_reused() {
    let pool = pool(8);
    let mut buffer = pool.get(100);
    buffer.extend_from_slice(&[7; 128]); // full, still the 128 class
    assert_eq!(buffer.size_class(), Some(128));
    drop(buffer);
    let again = pool.get(65);
    assert!(again.is_empty() && again.capacity() >= 65);
    let s = class(&pool, 128);
    assert_eq!((s.gets, s.misses, s.puts), (2, 1, 1), "{s:?}");
}

#[derive(Debug, Clone)]
enum Op {
    Get(usize),
    Grow(usize, usize),
    Shrink(usize),
    Put(usize),
    Detach(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..=3 * MAX).prop_map(Op::Get),
        2 => (any::<usize>(), 1..=2 * MAX).prop_map(|(i, n)| Op::Grow(i, n)),
        1 => any::<usize>().prop_map(Op::Shrink),
        3 => any::<usize>().prop_map(Op::Put),
        1 => any::<usize>().prop_map(Op::Detach),
    ]
}

proptest! {
    /// Random get / grow / shrink / put / detach sequences: after every step each class accounts for exactly the
    /// buffers got from it and still held, and no class keeps a buffer above the largest class.
    #[test]
    fn every_class_accounts_for_its_buffers(
        capacity_per_class in 1usize..6,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let pool = pool(capacity_per_class);
        let mut held: Vec<(usize, ByteSlice<'_>)> = Vec::new();
        for op in ops {
            match op {
                Op::Get(len) => {
                    let buffer = pool.get(len);
                    prop_assert!(buffer.capacity() >= len);
                    prop_assert!(buffer.is_empty());
                    held.push((len, buffer));
                }
                Op::Grow(i, n) if !held.is_empty() => {
                    let i = i % held.len();
                    held[i].1.extend(std::iter::repeat_n(1u8, n));
                }
                Op::Shrink(i) if !held.is_empty() => {
                    let i = i % held.len();
                    let buffer = &mut held[i].1;
                    buffer.clear();
                    buffer.shrink_to_fit();
                }
                Op::Put(i) if !held.is_empty() => {
                    let i = i % held.len();
                    drop(held.swap_remove(i));
                }
                Op::Detach(i) if !held.is_empty() => {
                    let i = i % held.len();
                    drop(held.swap_remove(i).1.detach());
                }
                _ => {}
            }
            let lens: Vec<usize> = held.iter().map(|(len, _)| *len).collect();
            let expected: Vec<(usize, i128)> = classes()
                .map(|size| (size, lens.iter().filter(|&&len| class_of_get(len) == size).count() as i128))
                .collect();
            prop_assert_eq!(in_use_by_class(&pool), expected);
            for size in classes() {
                let s = class(&pool, size);
                prop_assert!(s.idle <= s.capacity, "{:?}", s);
            }
        }
        drop(held);
        // Every idle buffer of each class really fits that class: none above the largest, none below its size.
        for size in classes() {
            let before = class(&pool, size);
            let taken: Vec<ByteSlice<'_>> = (0..before.idle).map(|_| pool.get(size)).collect();
            for buffer in &taken {
                prop_assert!(buffer.capacity() >= size && buffer.capacity() < 2 * size && buffer.capacity() <= MAX,
                    "class {} kept a buffer of capacity {}", size, buffer.capacity());
            }
            // Each idle buffer counted was really there to be reused.
            prop_assert_eq!(class(&pool, size).misses, before.misses);
        }
    }
}
