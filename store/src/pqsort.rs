//! Redis's `pqsort`: a Bentley-McIlroy (NetBSD) quicksort that only keeps
//! recursing into partitions overlapping an index window. Redis uses it
//! for SORT ... LIMIT and GEO* ... COUNT; the order it leaves elements that
//! compare equal is observable, so ferrite uses the same algorithm.

use std::cmp::Ordering;

/// Bentley-McIlroy quicksort that only keeps recursing into partitions
/// overlapping the index window `[lo, hi]` (the behaviour of Redis's
/// `pqsort`, which matters for the order of elements comparing equal).
/// `hi` may be below `lo` (empty window).
pub fn partial_qsort<T>(v: &mut [T], lo: usize, hi: i64, cmp: &mut impl FnMut(&T, &T) -> Ordering) {
    let hi = hi.max(-1);
    pqsort_range(v, 0, v.len(), lo as i64, hi, cmp);
}

fn insertion_sort<T>(v: &mut [T], a: usize, n: usize, cmp: &mut impl FnMut(&T, &T) -> Ordering) {
    for m in a + 1..a + n {
        let mut l = m;
        while l > a && cmp(&v[l - 1], &v[l]) == Ordering::Greater {
            v.swap(l, l - 1);
            l -= 1;
        }
    }
}

fn median3<T>(v: &[T], a: usize, b: usize, c: usize, cmp: &mut impl FnMut(&T, &T) -> Ordering) -> usize {
    if cmp(&v[a], &v[b]) == Ordering::Less {
        if cmp(&v[b], &v[c]) == Ordering::Less {
            b
        } else if cmp(&v[a], &v[c]) == Ordering::Less {
            c
        } else {
            a
        }
    } else if cmp(&v[b], &v[c]) == Ordering::Greater {
        b
    } else if cmp(&v[a], &v[c]) == Ordering::Less {
        a
    } else {
        c
    }
}

/// Swap the `n` elements starting at `a` with the `n` starting at `b`.
fn swap_runs<T>(v: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        v.swap(a + i, b + i);
    }
}

fn pqsort_range<T>(
    v: &mut [T],
    mut a: usize,
    mut n: usize,
    lo: i64,
    hi: i64,
    cmp: &mut impl FnMut(&T, &T) -> Ordering,
) {
    loop {
        if n < 7 {
            insertion_sort(v, a, n, cmp);
            return;
        }
        // Pivot: median of three (of three medians for big partitions).
        let mut pm = a + n / 2;
        if n > 7 {
            let mut pl = a;
            let mut pn = a + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = median3(v, pl, pl + d, pl + 2 * d, cmp);
                pm = median3(v, pm - d, pm, pm + d, cmp);
                pn = median3(v, pn - 2 * d, pn - d, pn, cmp);
            }
            pm = median3(v, pl, pm, pn, cmp);
        }
        v.swap(a, pm);
        // Split-end partitioning: elements equal to the pivot gather at
        // both ends, then move to the middle.
        let (mut pa, mut pb) = (a + 1, a + 1);
        let (mut pc, mut pd) = (a + n - 1, a + n - 1);
        loop {
            while pb <= pc {
                let r = cmp(&v[pb], &v[a]);
                if r == Ordering::Greater {
                    break;
                }
                if r == Ordering::Equal {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let r = cmp(&v[pc], &v[a]);
                if r == Ordering::Less {
                    break;
                }
                if r == Ordering::Equal {
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        // Unlike FreeBSD's qsort, Redis's pqsort.c has no "already
        // partitioned, finish with insertion sort" shortcut; ties depend on it.
        let pn = a + n;
        let r = (pa - a).min(pb - pa);
        swap_runs(v, a, pb - r, r);
        let r = (pd - pc).min(pn - pd - 1);
        swap_runs(v, pb, pn - r, r);
        let outside = |l: usize, len: usize| {
            let (l, r) = (l as i64, (l + len) as i64 - 1);
            (lo < l && hi < l) || (lo > r && hi > r)
        };
        let r = pb - pa;
        if r > 1 && !outside(a, r) {
            pqsort_range(v, a, r, lo, hi, cmp);
        }
        let r = pd - pc;
        if r > 1 && !outside(pn - r, r) {
            a = pn - r;
            n = r;
            continue;
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_the_window() {
        let mut v: Vec<u32> = (0..200).map(|i| (i * 7919) % 211).collect();
        let mut sorted = v.clone();
        sorted.sort();
        partial_qsort(&mut v, 0, 19, &mut |a, b| a.cmp(b));
        assert_eq!(&v[..20], &sorted[..20]);
        let mut w: Vec<u32> = (0..50).rev().collect();
        partial_qsort(&mut w, 0, 49, &mut |a, b| a.cmp(b));
        assert_eq!(w, (0..50).collect::<Vec<_>>());
    }
}
