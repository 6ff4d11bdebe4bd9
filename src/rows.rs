//! Batches padded to a minimum row count, so a sentence's score does not depend on
//! which other sentences share its batch.
//!
//! A CPU matrix product rounds a row's result the same way for any batch from a dozen
//! rows up, but small batches take other kernels: on the machines measured (MKL through
//! libtorch 2.11, one and two threads), batches of 1–3 and 5–7 and 9–11 rows gave
//! results a few units in the last place away from the same rows in a larger batch.
//! Scoring meets small batches wherever the work is cut by content: the last batch of a
//! chunk, the few rows of a class-layer cluster, the deep levels of a prefix tree. Then
//! the same file scored whole or in two parts (as the Dask driver does) would differ in
//! the last printed digit. Running every such product with at least [`MIN_ROWS`] rows
//! costs little, because a product that small is bound by reading the weights, not by
//! the arithmetic.

use tch::Tensor;

/// Fewest rows a scoring batch runs with.
pub const MIN_ROWS: usize = 16;

/// `x` `[n, …]` with zero rows appended up to [`MIN_ROWS`]; `x` itself when it has as many.
pub fn pad_rows(x: &Tensor) -> Tensor {
    let missing = MIN_ROWS as i64 - x.size()[0];
    if missing <= 0 {
        return x.shallow_clone();
    }
    let mut shape = x.size();
    shape[0] = missing;
    Tensor::cat(&[x, &Tensor::zeros(&shape, (x.kind(), x.device()))], 0)
}

/// `f(x)` where `x` `[n, …]` is run padded by [`pad_rows`] and the result cut back to
/// its first `n` rows. `f` must treat rows independently.
pub fn with_min_rows(x: &Tensor, f: impl FnOnce(&Tensor) -> Tensor) -> Tensor {
    let n = x.size()[0];
    f(&pad_rows(x)).narrow(0, 0, n)
}

/// `items` repeated from its first entry up to [`MIN_ROWS`] entries (an empty list stays
/// empty); the real entries come first.
pub fn padded<T: Copy>(items: &[T]) -> Vec<T> {
    let mut out = items.to_vec();
    if let Some(&first) = items.first() {
        out.resize(out.len().max(MIN_ROWS), first);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_keeps_the_rows_and_their_order() {
        let x = Tensor::from_slice(&[1f32, 2., 3.]).view([3, 1]);
        let seen = std::cell::Cell::new(0);
        let y = with_min_rows(&x, |p| {
            seen.set(p.size()[0]);
            p * 2.0
        });
        assert_eq!(seen.get(), MIN_ROWS as i64);
        assert_eq!(
            Vec::<f32>::try_from(y.view([-1])).unwrap(),
            vec![2., 4., 6.]
        );
        assert_eq!(padded(&[7, 8]).len(), MIN_ROWS);
        assert_eq!(&padded(&[7, 8])[..3], &[7, 8, 7]);
        assert!(padded::<i64>(&[]).is_empty());
        let many: Vec<i64> = (0..20).collect();
        assert_eq!(padded(&many), many);
    }

    /// The property the padding exists for: a row's result of a linear map is the same
    /// bits whatever the other rows of its (padded) batch.
    /// The padded rows are the large batch's rows. To the bit with MKL's kernels on the
    /// machines measured, but no BLAS promises how a batch of 16 rounds against one of
    /// 64, so the test allows a few units in the last place (f32's is 6e-8 relative).
    #[test]
    fn a_padded_row_rounds_as_in_a_large_batch() {
        tch::manual_seed(3);
        let weight = Tensor::randn([1024, 256], tch::kind::FLOAT_CPU);
        let x = Tensor::randn([64, 256], tch::kind::FLOAT_CPU);
        let full = x.linear::<Tensor>(&weight, None);
        for n in 1..MIN_ROWS as i64 {
            let part = with_min_rows(&x.narrow(0, 0, n), |p| p.linear::<Tensor>(&weight, None));
            assert_eq!(part.size(), [n, 1024]);
            assert!(
                part.allclose(&full.narrow(0, 0, n), 1e-6, 1e-5, false),
                "rows 0..{n} differ from the 64-row batch beyond rounding"
            );
        }
    }
}
