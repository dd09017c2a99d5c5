//! Pipeline: order, error policies, panics, cancellation, backpressure and accounting. Paused clock, no sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream;
use otlp_patterns::{BuildError, ErrorPolicy, Pipeline, PipelineError, PipelineStats};
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

fn accounted(s: &PipelineStats) -> bool {
    s.queued == 0 && s.submitted == s.ok + s.failed + s.panicked + s.cancelled
}

#[test]
fn bad_configuration_is_a_typed_error() {
    let err = Pipeline::builder("p")
        .stage("a", 0, |x: u32| async move { x })
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::ZeroConcurrency { .. }), "{err}");
    assert!(err.to_string().contains("\"a\""), "{err}");
    let err = Pipeline::builder("p")
        .stage("a", 1, |x: u32| async move { x })
        .capacity(0)
        .build();
    assert_eq!(err.unwrap_err(), BuildError::ZeroCapacity);
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let p = Pipeline::builder("p")
        .stage_fallible("a", 2, |x: u32| async move { Ok::<_, String>(x + 1) })
        .build()
        .unwrap();
    send_sync(&p);
    fn send<T: Send>(_: &T) {}
    send(&p.run(stream::iter(0..3u32)));
    send_sync(&PipelineError::<String>::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn ordered_by_default_whatever_the_completion_order() {
    let p = Pipeline::builder("order")
        .stage("slow-first", 4, |i: u64| async move {
            tokio::time::sleep(Duration::from_millis(100 - i)).await;
            i
        })
        .stage("fmt", 3, |i| async move { format!("#{i}") })
        .capacity(2)
        .build()
        .unwrap();
    let out: Vec<_> = p.run(stream::iter(0..20u64)).collect().await;
    assert_eq!(
        out,
        (0..20).map(|i| Ok(format!("#{i}"))).collect::<Vec<_>>()
    );
    assert!(accounted(&p.stats()));
    assert_eq!(p.stats().ok, 20);
}

#[tokio::test(start_paused = true)]
async fn unordered_lets_fast_items_overtake() {
    let p = Pipeline::builder("unordered")
        .stage("wait", 4, |i: u64| async move {
            tokio::time::sleep(Duration::from_millis(10 * (4 - i))).await;
            i
        })
        .unordered()
        .build()
        .unwrap();
    let out: Vec<_> = p
        .run(stream::iter(0..4u64))
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(out, vec![3, 2, 1, 0]);
}

#[tokio::test(start_paused = true)]
async fn stop_policy_yields_the_error_then_the_items_in_flight_as_cancelled() {
    let p = Pipeline::builder("stop")
        .stage_fallible("check", 2, |i: u32| async move {
            tokio::time::sleep(Duration::from_millis(u64::from(i))).await;
            if i == 3 {
                Err(format!("bad {i}"))
            } else {
                Ok(i)
            }
        })
        .capacity(2)
        .build()
        .unwrap();
    let out: Vec<_> = p.run(stream::iter(0..100u32)).collect().await;
    assert_eq!(&out[..3], &[Ok(0), Ok(1), Ok(2)]);
    assert_eq!(
        out[3],
        Err(PipelineError::Failed {
            stage: "check".into(),
            error: "bad 3".into()
        })
    );
    assert!(
        out[4..].iter().all(|r| *r == Err(PipelineError::Cancelled)),
        "{out:?}"
    );
    let s = p.stats();
    assert!(accounted(&s), "{s:?}");
    assert_eq!(
        s.submitted as usize,
        out.len(),
        "every item taken was reported"
    );
    assert!(
        s.submitted < 10,
        "the run kept pulling input after stopping: {s:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn skip_policy_counts_and_drops_failures_and_panics() {
    let p = Pipeline::builder("skip")
        .stage_fallible("a", 3, |i: u32| async move {
            match i % 5 {
                1 => Err(i),
                2 => panic!("panic on {i}"),
                _ => Ok(i),
            }
        })
        .stage_fallible("b", 1, |i| async move { Ok(i * 10) })
        .error_policy(ErrorPolicy::Skip)
        .build()
        .unwrap();
    let out: Vec<_> = p
        .run(stream::iter(0..10u32))
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(out, vec![0, 30, 40, 50, 80, 90]);
    let s = p.stats();
    assert_eq!((s.ok, s.failed, s.panicked), (6, 2, 2));
    assert!(accounted(&s));
}

#[tokio::test(start_paused = true)]
async fn panics_are_reported_with_their_stage() {
    let p = Pipeline::builder("panic")
        .stage("boom", 1, |_: u32| async move { panic!("oops") })
        .stage_fallible("never", 1, |_: ()| async move { Ok::<u32, String>(1) })
        .build()
        .unwrap();
    let out: Vec<_> = p.run(stream::iter([1u32])).collect().await;
    assert_eq!(
        out,
        vec![Err(PipelineError::Panicked {
            stage: "boom".into(),
            message: "oops".into()
        })]
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_parent_reports_every_item_in_flight() {
    let token = CancellationToken::new();
    let p = Pipeline::builder("cancel")
        .stage("forever", 3, |i: u32| async move {
            if i == 0 {
                return i;
            }
            std::future::pending::<()>().await;
            i
        })
        .capacity(4)
        .parent(token.clone())
        .build()
        .unwrap();
    let mut run = p.run(stream::iter(0..1000u32));
    assert_eq!(run.next().await, Some(Ok(0)));
    let t = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        t.cancel();
    });
    let rest: Vec<_> = run.collect().await;
    assert!(!rest.is_empty());
    assert!(rest.iter().all(|r| *r == Err(PipelineError::Cancelled)));
    let s = p.stats();
    assert_eq!(s.cancelled as usize, rest.len());
    assert!(s.submitted <= 1 + 4 + 3, "{s:?}");
    assert!(accounted(&s), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_last_stage_holds_a_bounded_number_of_items() {
    let capacity = 3;
    let pulled = Arc::new(AtomicU64::new(0));
    let p = Pipeline::builder("stall")
        .stage("a", 2, |i: u64| async move { i })
        .stage("b", 4, |i| async move { i })
        .stage("stuck", 2, |_| std::future::pending::<u64>())
        .capacity(capacity)
        .build()
        .unwrap();
    let counter = pulled.clone();
    let input = stream::iter(0..1_000_000u64).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let mut run = p.run(input);
    let r = tokio::time::timeout(Duration::from_secs(1), run.next()).await;
    assert!(r.is_err(), "the stuck stage produced something");
    let bound = 3 * capacity as u64 + 2 + 4 + 2;
    assert!(
        pulled.load(Ordering::Relaxed) <= bound,
        "pulled {} > {bound}",
        pulled.load(Ordering::Relaxed)
    );
    assert!(p.stats().queued <= 3 * capacity as u64);
    drop(run);
    let s = p.stats();
    assert_eq!(s.cancelled, pulled.load(Ordering::Relaxed));
    assert!(accounted(&s), "{s:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 48 }, ..ProptestConfig::default() })]

    /// Ordered runs keep input order for any completion order; every item taken is counted exactly once, for any
    /// mix of outcomes, policy and stopping point (dropping the run, or cancelling it).
    #[test]
    fn order_and_accounting(
        items in proptest::collection::vec((0u64..30, 0u8..12), 0..40),
        k1 in 1usize..5,
        k2 in 1usize..5,
        capacity in 1usize..5,
        skip in any::<bool>(),
        ordered in any::<bool>(),
        stop_after in proptest::option::of(0usize..40),
        cancel in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(async {
            let token = CancellationToken::new();
            let mut b = Pipeline::builder("prop")
                .stage_fallible("one", k1, |(i, (d, kind)): (usize, (u64, u8))| async move {
                    tokio::time::sleep(Duration::from_millis(d)).await;
                    match kind {
                        0 => Err(i),
                        1 => panic!("item {i}"),
                        _ => Ok((i, d)),
                    }
                })
                .stage_fallible("two", k2, |(i, d): (usize, u64)| async move {
                    tokio::time::sleep(Duration::from_millis(30 - d)).await;
                    Ok(i)
                })
                .capacity(capacity)
                .parent(token.clone())
                .error_policy(if skip { ErrorPolicy::Skip } else { ErrorPolicy::Stop });
            if !ordered {
                b = b.unordered();
            }
            let p = b.build().unwrap();
            let mut run = p.run(stream::iter(items.clone().into_iter().enumerate()));
            let mut oks = Vec::new();
            let mut yielded = 0usize;
            while let Some(r) = run.next().await {
                yielded += 1;
                prop_assert!(p.stats().queued <= 2 * capacity as u64);
                if let Ok(i) = r {
                    oks.push(i);
                }
                if Some(yielded) == stop_after {
                    if cancel { token.cancel() } else { break }
                }
            }
            drop(run);
            if ordered {
                prop_assert!(oks.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", oks);
            }
            let s = p.stats();
            prop_assert!(accounted(&s), "{:?}", s);
            prop_assert!(s.submitted as usize <= items.len());
            if stop_after.is_none() && skip {
                prop_assert_eq!(s.submitted as usize, items.len());
                let expected_ok = items.iter().filter(|(_, k)| *k >= 2).count();
                prop_assert_eq!(oks.len(), expected_ok);
            }
            Ok(())
        })?;
    }
}

/// A stage may be `FnMut`: here it numbers the items it sees, state kept across items and runs. Stages that
/// cannot fail return plain values: no `Ok`, no error type, no annotation past the pipeline's input type.
#[tokio::test(start_paused = true)]
async fn stages_may_be_fn_mut() {
    let mut seen = 0u32;
    let mut lengths = Vec::new();
    let pipeline = Pipeline::builder("fn-mut")
        .stage("number", 2, move |line: &'static str| {
            seen += 1;
            let n = seen;
            async move { (n, line) }
        })
        .stage("measure", 1, move |(n, line)| {
            lengths.push(line.len());
            let total: usize = lengths.iter().sum();
            async move { (n, total) }
        })
        .build()
        .unwrap();
    let first: Vec<_> = pipeline
        .run(futures::stream::iter(["a", "bb", "ccc"]))
        .collect()
        .await;
    assert_eq!(first, vec![Ok((1, 1)), Ok((2, 3)), Ok((3, 6))]);
    let second: Vec<_> = pipeline
        .run(futures::stream::iter(["dddd"]))
        .collect()
        .await;
    assert_eq!(
        second,
        vec![Ok((4, 10))],
        "the state carries over to the next run"
    );
}

/// Plain and fallible stages mix: the first fallible stage sets the pipeline's error type, later ones infer it
/// (`Ok(..)` needs no turbofish), and plain stages around them fit any error type.
#[tokio::test(start_paused = true)]
async fn plain_and_fallible_stages_mix_without_annotations() {
    let p = Pipeline::builder("mixed")
        .stage("trim", 1, |line: &'static str| async move { line.trim() })
        .stage_fallible("parse", 2, |s| async move {
            s.parse::<u32>().map_err(|e| format!("{s:?}: {e}"))
        })
        .stage_fallible("check", 1, |n| async move {
            if n < 100 {
                Ok(n)
            } else {
                Err(format!("{n} is too big"))
            }
        })
        .stage("square", 2, |n| async move { n * n })
        .stage_fallible("keep", 1, |n| async move { Ok(n) })
        .error_policy(ErrorPolicy::Skip)
        .build()
        .unwrap();
    let out: Vec<Result<u32, PipelineError<String>>> = p
        .run(stream::iter([" 3", "x", "200 ", "4"]))
        .collect()
        .await;
    assert_eq!(out, vec![Ok(9), Ok(16)]);
    let s = p.stats();
    assert_eq!((s.submitted, s.ok, s.failed), (4, 2, 2), "{s:?}");
}
