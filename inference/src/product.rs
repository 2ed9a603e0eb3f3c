//! The matrix product the encoder and the heads use: on the CPU the same
//! bits on every CPU, and no gradient for a side that needs none.
//!
//! candle multiplies with the `gemm` crate. On its general path (one side
//! longer than 64 and no vector shape) gemm cuts an inner dimension `k`
//! longer than its block `kc` into blocks and adds their partial sums one
//! after the other, and `kc` comes from the L1 data cache that `/sys`
//! describes: 512 for 32 KiB with 8 ways, 1024 for 48 KiB with 12 ways (an
//! AMD EPYC's). The order of the additions, and with it the last bits of
//! the encoder's states and of every gradient, so depended on the CPU: the
//! shipped recipe gave weights `8579a7c4…` on one machine and `5f2696ad…`
//! on another (decision 070, 2026-12-07). Its other paths (small products,
//! vector shapes) use fixed blocks and do not depend on the machine.
//!
//! [`product`] gives gemm's general path no inner dimension longer than
//! [`MAX_INNER`]: it multiplies the pieces that gemm would make with a
//! 512 block (equal lengths, the last one shorter) and adds them in order,
//! which is what gemm computes on a CPU with a 32 KiB, 8-way L1, bit for
//! bit; everything else goes to gemm whole. The states, the gradients and
//! the trained weights then depend only on the inputs.

use anyhow::Result;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

/// The longest inner dimension one gemm call gets: gemm never splits one
/// of at most 512 (its block is at least 512 or the whole of it).
pub const MAX_INNER: usize = 512;

/// `a × b` as [`Tensor::matmul`] computes it (any rank, batched over the
/// leading dimensions), except on the CPU: there a product that gemm would
/// split by the CPU's cache is cut into pieces of at most [`MAX_INNER`]
/// whose products are added in order (any other product is candle's own,
/// bit for bit), and the backward pass computes only the gradients of the
/// sides that are tracked (candle's matmul computes both: for the input
/// projection of frozen encoder states, a product as large as the forward
/// one thrown away; docs/perf.md).
pub fn product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let cpu = a.device().is_cpu() && b.device().is_cpu();
    if cpu && a.elem_count() > 0 && b.elem_count() > 0 {
        Ok(a.apply_op2(b, Product)?)
    } else {
        Ok(a.matmul(b)?)
    }
}

/// The custom operation behind [`product`] on the CPU.
struct Product;

/// Into how many pieces of the inner dimension `k` a product is cut: more
/// than one only where gemm would take its general path, whose block
/// depends on the CPU, with `k` beyond [`MAX_INNER`]. The conditions are
/// gemm 0.19's (`gemm_basic_generic`), with the strides candle passes it:
/// the last two of each layout, the destination row-major. (gemm first
/// transposes a product whose destination is row-major, swapping `m` and
/// `n` and the two sides; each condition below reads the same either way.)
fn general_path_pieces(
    l1: &Layout,
    l2: &Layout,
    batching: usize,
    m: usize,
    n: usize,
    k: usize,
) -> usize {
    if k <= MAX_INNER {
        return 1;
    }
    let (sa, sb) = (l1.stride(), l2.stride());
    let r = sa.len();
    let (lhs_cs, lhs_rs, rhs_cs, rhs_rs) = (sa[r - 1], sa[r - 2], sb[r - 1], sb[r - 2]);
    let (dst_cs, dst_rs) = (1, n);
    // candle stacks the batches into the rows of one product when the
    // right side is the same for every batch and the left side's batches
    // follow one another.
    let folded =
        batching > 1 && sb[..r - 2].iter().all(|&s| s == 0) && sa[..r - 2].last() == Some(&(m * k));
    let m = if folded { batching * m } else { m };
    let horizontal = lhs_cs == 1 && rhs_rs == 1 && m * n <= 16 * 16;
    let vector = (n <= 1 && lhs_rs == 1 && dst_rs == 1)
        || (n <= 1 && lhs_cs == 1 && rhs_rs == 1)
        || (m <= 1 && rhs_cs == 1 && dst_cs == 1)
        || (m <= 1 && rhs_rs == 1 && lhs_cs == 1);
    let small = m <= 64 && n <= 64;
    if horizontal || vector || small {
        1
    } else {
        k.div_ceil(MAX_INNER)
    }
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "fixed-order-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        // `Tensor::matmul`'s checks: the custom operation gets storages and
        // layouts, so it works the shapes out itself.
        let (a, b) = (l1.dims(), l2.dims());
        let dim = a.len();
        let mismatch = || candle_core::Error::ShapeMismatchBinaryOp {
            lhs: l1.shape().clone(),
            rhs: l2.shape().clone(),
            op: "matmul",
        };
        if dim < 2 || b.len() != dim {
            return Err(mismatch());
        }
        let (m, k, k2, n) = (a[dim - 2], a[dim - 1], b[dim - 2], b[dim - 1]);
        let batching: usize = a[..dim - 2].iter().product();
        if k != k2 || batching != b[..dim - 2].iter().product::<usize>() || k == 0 || m * n == 0 {
            return Err(mismatch());
        }
        let shape = Shape::from(&a[..dim - 2]).extend(&[m, n]);
        let pieces = general_path_pieces(l1, l2, batching, m, n, k);
        if pieces == 1 || !matches!(s1, CpuStorage::F32(_)) {
            // What `Tensor::matmul` calls, with the same arguments.
            return Ok((s1.matmul(s2, (batching, m, n, k), l1, l2)?, shape));
        }
        // Pieces of (nearly) equal length, each at most MAX_INNER, their
        // products added in order.
        let len = k.div_ceil(pieces);
        let mut sum: Vec<f32> = Vec::new();
        let mut start = 0;
        while start < k {
            let kc = len.min(k - start);
            let la = l1.narrow(dim - 1, start, kc)?;
            let lb = l2.narrow(dim - 2, start, kc)?;
            let part = match s1.matmul(s2, (batching, m, n, kc), &la, &lb)? {
                CpuStorage::F32(v) => v,
                _ => {
                    return Err(candle_core::Error::Msg(
                        "an f32 product gave another type".into(),
                    ))
                }
            };
            if sum.is_empty() {
                sum = part;
            } else {
                for (s, p) in sum.iter_mut().zip(&part) {
                    *s += p;
                }
            }
            start += kc;
        }
        Ok((CpuStorage::F32(sum), shape))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // candle's matmul gradients (grad × bᵀ, aᵀ × grad), each only for a
        // side the graph tracks, computed by `product` too.
        let wrap = |r: Result<Tensor>| r.map_err(|e| candle_core::Error::Msg(format!("{e:#}")));
        let ga = if a.track_op() {
            Some(wrap(product(grad, &b.t()?))?)
        } else {
            None
        };
        let gb = if b.track_op() {
            Some(wrap(product(&a.t()?, grad))?)
        } else {
            None
        };
        Ok((ga, gb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn filled(shape: &[usize], seed: u64) -> Result<Tensor> {
        let mut rng = crate::gen::Rng::new(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    fn bits(t: &Tensor) -> Result<Vec<u32>> {
        Ok(t.flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f32::to_bits)
            .collect())
    }

    /// Up to MAX_INNER the values and gradients are candle's, bit for bit;
    /// a constant side gets no gradient where candle's product gives it one.
    #[test]
    fn a_short_product_is_candles_and_skips_a_constant_sides_gradient() -> Result<()> {
        for (sa, sb) in [
            (vec![7, 40], vec![40, 5]),
            (vec![3, 6, 12], vec![3, 12, 4]),
            (vec![2, 3, 5, 8], vec![2, 3, 8, 9]),
            (vec![9, MAX_INNER], vec![MAX_INNER, 3]),
        ] {
            let a = filled(&sa, 1)?;
            let w = Var::from_tensor(&filled(&sb, 2)?)?;
            let ours = product(&a, w.as_tensor())?;
            let theirs = a.matmul(w.as_tensor())?;
            assert_eq!(bits(&ours)?, bits(&theirs)?, "{sa:?} × {sb:?}");
            let g_ours = ours.sqr()?.sum_all()?.backward()?;
            let g_theirs = theirs.sqr()?.sum_all()?.backward()?;
            let (go, gt) = (g_ours.get(w.as_tensor()), g_theirs.get(w.as_tensor()));
            assert_eq!(
                bits(go.expect("our gradient"))?,
                bits(gt.expect("candle's gradient"))?
            );
            // Both sides tracked: both gradients, candle's.
            let v = Var::from_tensor(&a)?;
            let g_ours = product(v.as_tensor(), w.as_tensor())?
                .sum_all()?
                .backward()?;
            let g_theirs = v.as_tensor().matmul(w.as_tensor())?.sum_all()?.backward()?;
            for t in [v.as_tensor(), w.as_tensor()] {
                assert_eq!(
                    bits(g_ours.get(t).expect("ours"))?,
                    bits(g_theirs.get(t).expect("candle's"))?
                );
            }
        }
        // A constant left side (the encoder's states): candle's product
        // gives it a gradient nobody reads, ours does not.
        let x = filled(&[4, 6], 3)?;
        let w = Var::from_tensor(&filled(&[6, 2], 4)?)?;
        let theirs = x.matmul(w.as_tensor())?.sum_all()?.backward()?;
        assert!(
            theirs.get(&x).is_some(),
            "candle's product: a gradient for x"
        );
        let ours = product(&x, w.as_tensor())?.sum_all()?.backward()?;
        assert!(ours.get(&x).is_none(), "a gradient for a constant");
        assert!(ours.get(w.as_tensor()).is_some());
        Ok(())
    }

    /// Beyond MAX_INNER on gemm's general path: the ordered sum of the
    /// products of the pieces gemm makes with a block of 512; elsewhere
    /// candle's product whole. Gradients too.
    #[test]
    fn a_long_product_is_the_ordered_sum_of_gemms_pieces() -> Result<()> {
        for (sa, sb, cut) in [
            (vec![100, 1152], vec![1152, 70], true),
            (vec![2, 80, 1300], vec![2, 1300, 4], true),
            (vec![65, 1536], vec![1536, 384], true),
            (vec![5, 1152], vec![1152, 7], false), // gemm's small path
            (vec![1, 700], vec![700, 300], false), // a vector
            (vec![3, 700], vec![700, 100], true),  // wide: the general path
        ] {
            let a = filled(&sa, 5)?;
            let b = filled(&sb, 6)?;
            let dim = sa.len();
            let k = sa[dim - 1];
            let ours = product(&a, &b)?;
            let len = if cut {
                k.div_ceil(k.div_ceil(MAX_INNER))
            } else {
                k
            };
            let mut expect: Option<Tensor> = None;
            let mut start = 0;
            while start < k {
                let kc = len.min(k - start);
                let p = a
                    .narrow(dim - 1, start, kc)?
                    .matmul(&b.narrow(dim - 2, start, kc)?)?;
                expect = Some(match expect {
                    None => p,
                    Some(s) => (s + p)?,
                });
                start += kc;
            }
            let expect = expect.expect("a piece");
            assert_eq!(bits(&ours)?, bits(&expect)?, "{sa:?} × {sb:?}");
            let diff = (&ours - a.matmul(&b)?)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-3, "{diff}");
        }
        // A weight's gradient over more rows than MAX_INNER (aᵀ × grad has
        // the rows as its inner dimension): cut for a wide layer, candle's
        // whole for a narrow one.
        for (cols, outs, cut) in [(100, 80, true), (6, 3, false)] {
            let x = filled(&[1100, cols], 7)?;
            let w = Var::from_tensor(&filled(&[cols, outs], 8)?)?;
            let ours = product(&x, w.as_tensor())?.sqr()?.sum_all()?.backward()?;
            let theirs = x.matmul(w.as_tensor())?.sqr()?.sum_all()?.backward()?;
            let (go, gt) = (
                ours.get(w.as_tensor()).expect("ours"),
                theirs.get(w.as_tensor()).expect("candle's"),
            );
            if cut {
                let rel = ((go - gt)?.abs()?.max_all()?.to_scalar::<f32>()?)
                    / gt.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(rel < 1e-5, "{rel}");
            } else {
                assert_eq!(bits(go)?, bits(gt)?);
            }
        }
        Ok(())
    }
}
