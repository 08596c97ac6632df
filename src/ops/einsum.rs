//! Einsum with explicit or implicit output, any number of operands, no ellipsis needed by
//! this model family (ellipsis supported where cheap).

use super::{OpError, OpResult};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array3, ArrayView3, ArrayViewD, ArrayViewMutD, Axis, CowArray, IxDyn};

/// Labels: letters are their ASCII code, ellipsis dimensions are `ELLIPSIS + i`.
type Label = u32;
const ELLIPSIS: Label = 256;

/// A parsed equation resolved against operand shapes.
#[derive(Debug)]
struct Plan {
    /// labels of each operand's axes
    inputs: Vec<Vec<Label>>,
    /// labels of the output axes
    output: Vec<Label>,
    /// every label in order: output labels first, then summed labels
    all: Vec<Label>,
    /// size of each label in `all`
    sizes: Vec<usize>,
}

impl Plan {
    fn size(&self, l: Label) -> usize {
        self.all
            .iter()
            .position(|&a| a == l)
            .map_or(0, |p| self.sizes[p])
    }
}

enum Tok {
    Letter(Label),
    Ellipsis,
}

fn err(equation: &str, shapes: &[&[usize]], why: &str) -> OpError {
    OpError::Shape(format!("Einsum '{equation}' with shapes {shapes:?}: {why}"))
}

fn tokenize(term: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = term.chars().peekable();
    let mut ellipses = 0;
    while let Some(c) = chars.next() {
        if c.is_ascii_alphabetic() {
            toks.push(Tok::Letter(c as Label));
        } else if c == '.' {
            if chars.next() != Some('.') || chars.next() != Some('.') {
                return Err(format!("malformed ellipsis in '{term}'"));
            }
            ellipses += 1;
            toks.push(Tok::Ellipsis);
        } else {
            return Err(format!("unexpected character '{c}'"));
        }
    }
    if ellipses > 1 {
        return Err(format!("more than one ellipsis in '{term}'"));
    }
    Ok(toks)
}

fn parse(equation: &str, shapes: &[&[usize]]) -> OpResult<Plan> {
    let e = |why: &str| err(equation, shapes, why);
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let mut parts = eq.split("->");
    let lhs = parts.next().unwrap_or("");
    let rhs = parts.next();
    if parts.next().is_some() {
        return Err(e("more than one '->'"));
    }
    let terms: Vec<Vec<Tok>> = lhs
        .split(',')
        .map(tokenize)
        .collect::<Result<_, _>>()
        .map_err(|m| e(&m))?;
    if terms.len() != shapes.len() {
        return Err(e(&format!(
            "{} terms for {} operands",
            terms.len(),
            shapes.len()
        )));
    }
    // Ellipsis rank of each operand.
    let mut ell = Vec::with_capacity(terms.len());
    for (t, s) in terms.iter().zip(shapes) {
        let letters = t.iter().filter(|k| matches!(k, Tok::Letter(_))).count();
        let has_ell = t.len() != letters;
        if (!has_ell && letters != s.len()) || letters > s.len() {
            return Err(e("subscript count does not match operand rank"));
        }
        ell.push(s.len() - letters);
    }
    let max_ell = ell.iter().copied().max().unwrap_or(0);
    let any_ell = terms
        .iter()
        .any(|t| t.iter().any(|k| matches!(k, Tok::Ellipsis)));
    let ell_labels = |n: usize| (max_ell - n..max_ell).map(|i| ELLIPSIS + i as Label);
    let mut inputs: Vec<Vec<Label>> = Vec::new();
    for (t, &n) in terms.iter().zip(&ell) {
        let mut labels = Vec::new();
        for k in t {
            match k {
                Tok::Letter(l) => labels.push(*l),
                Tok::Ellipsis => labels.extend(ell_labels(n)),
            }
        }
        inputs.push(labels);
    }
    // Label sizes: letters must agree, ellipsis dimensions broadcast.
    let mut all: Vec<Label> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    for (labels, s) in inputs.iter().zip(shapes) {
        for (&l, &d) in labels.iter().zip(s.iter()) {
            match all.iter().position(|&a| a == l) {
                None => {
                    all.push(l);
                    sizes.push(d);
                }
                Some(p) if sizes[p] == d => {}
                Some(p) if l >= ELLIPSIS && (sizes[p] == 1 || d == 1) => sizes[p] = sizes[p].max(d),
                Some(_) => {
                    return Err(e(&format!(
                        "inconsistent sizes for subscript {}",
                        label_name(l)
                    )))
                }
            }
        }
    }
    let output: Vec<Label> = match rhs {
        Some(r) => {
            let toks = tokenize(r).map_err(|m| e(&m))?;
            let mut out = Vec::new();
            for k in toks {
                match k {
                    Tok::Letter(l) => {
                        if out.contains(&l) {
                            return Err(e(&format!("output subscript {} repeated", label_name(l))));
                        }
                        if !all.contains(&l) {
                            return Err(e(&format!(
                                "output subscript {} not in inputs",
                                label_name(l)
                            )));
                        }
                        out.push(l);
                    }
                    Tok::Ellipsis => out.extend(ell_labels(max_ell)),
                }
            }
            out
        }
        None => {
            let mut out: Vec<Label> = if any_ell {
                ell_labels(max_ell).collect()
            } else {
                Vec::new()
            };
            let mut once: Vec<Label> = all
                .iter()
                .copied()
                .filter(|&l| {
                    l < ELLIPSIS && inputs.iter().flatten().filter(|&&m| m == l).count() == 1
                })
                .collect();
            once.sort_unstable();
            out.extend(once);
            out
        }
    };
    // Reorder: output labels first.
    let mut order: Vec<Label> = output.clone();
    order.extend(all.iter().copied().filter(|l| !output.contains(l)));
    let sizes = order
        .iter()
        .map(|l| all.iter().position(|a| a == l).map_or(1, |p| sizes[p]))
        .collect();
    Ok(Plan {
        inputs,
        output,
        all: order,
        sizes,
    })
}

fn label_name(l: Label) -> String {
    match char::from_u32(l) {
        Some(c) if l < ELLIPSIS => c.to_string(),
        _ => format!("...[{}]", l - ELLIPSIS),
    }
}

/// Output shape of an einsum.
pub fn einsum_shape(equation: &str, inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
    let p = parse(equation, inputs)?;
    Ok(p.output.iter().map(|&l| p.size(l)).collect())
}

/// Reference einsum (loops over the full index space).
pub fn run_einsum(
    equation: &str,
    inputs: &[ArrayViewD<f32>],
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|x| x.shape()).collect();
    let p = parse(equation, &shapes)?;
    let out: Vec<usize> = p.output.iter().map(|&l| p.size(l)).collect();
    if out.as_slice() != y.shape() {
        return Err(err(
            equation,
            &shapes,
            &format!("output is {:?}, expected {out:?}", y.shape()),
        ));
    }
    // Two operands, no diagonal, no broadcast: a batched matrix product.
    let plain = |labels: &[Label], s: &[usize]| {
        labels
            .iter()
            .enumerate()
            .all(|(i, l)| !labels[..i].contains(l))
            && labels.iter().zip(s).all(|(&l, &d)| d == p.size(l))
    };
    if inputs.len() == 2 && plain(&p.inputs[0], shapes[0]) && plain(&p.inputs[1], shapes[1]) {
        return contract_pair(&p, &inputs[0], &inputs[1], y)
            .map_err(|why| err(equation, &shapes, &why));
    }
    generic(&p, inputs, y).map_err(|why| err(equation, &shapes, &why))
}

/// Full index-space loop: works for any operand count, diagonals and broadcasting.
fn generic(p: &Plan, inputs: &[ArrayViewD<f32>], y: &mut ArrayViewMutD<f32>) -> Result<(), String> {
    let data: Vec<CowArray<f32, IxDyn>> = inputs.iter().map(|x| x.as_standard_layout()).collect();
    let slices: Vec<&[f32]> = data
        .iter()
        .map(|d| {
            d.as_slice()
                .ok_or_else(|| "operand not contiguous".to_string())
        })
        .collect::<Result<_, _>>()?;
    // strides[op][label]: element stride of the label in that operand (0 when absent or broadcast)
    let nl = p.all.len();
    let strides: Vec<Vec<usize>> = p
        .inputs
        .iter()
        .zip(inputs)
        .map(|(labels, x)| {
            let shape = x.shape();
            let mut st = vec![0usize; nl];
            let mut s = 1usize;
            for i in (0..labels.len()).rev() {
                let pos = p.all.iter().position(|&a| a == labels[i]).unwrap_or(0);
                if shape[i] != 1 || p.sizes[pos] == 1 {
                    st[pos] += s;
                }
                s *= shape[i];
            }
            st
        })
        .collect();
    let n_out = p.output.len();
    let sum_sizes = &p.sizes[n_out..];
    let sum_count: usize = sum_sizes.iter().product();
    let mut oidx = vec![0usize; n_out];
    let mut sidx = vec![0usize; nl - n_out];
    let mut offs = vec![0usize; inputs.len()];
    for o in y.iter_mut() {
        let mut acc = 0.0f32;
        sidx.iter_mut().for_each(|v| *v = 0);
        for _ in 0..sum_count {
            for (k, st) in strides.iter().enumerate() {
                offs[k] = oidx.iter().chain(&sidx).zip(st).map(|(&i, &s)| i * s).sum();
            }
            acc += offs
                .iter()
                .zip(&slices)
                .map(|(&off, s)| s[off])
                .product::<f32>();
            advance(&mut sidx, sum_sizes);
        }
        *o = acc;
        advance(&mut oidx, &p.sizes[..n_out]);
    }
    Ok(())
}

/// Row-major counter increment.
fn advance(idx: &mut [usize], sizes: &[usize]) {
    for j in (0..idx.len()).rev() {
        idx[j] += 1;
        if idx[j] < sizes[j] {
            return;
        }
        idx[j] = 0;
    }
}

/// Sum `x` over the axes whose label satisfies `drop`; returns the result and its labels.
fn presum<'a>(
    x: &ArrayViewD<'a, f32>,
    labels: &[Label],
    drop: impl Fn(Label) -> bool,
) -> (CowArray<'a, f32, IxDyn>, Vec<Label>) {
    let mut arr = CowArray::from(x.clone());
    let mut kept = labels.to_vec();
    for i in (0..labels.len()).rev() {
        if drop(labels[i]) {
            arr = CowArray::from(arr.sum_axis(Axis(i)));
            kept.remove(i);
        }
    }
    (arr, kept)
}

/// View `x` (axis labels `labels`) as `[prod g0, prod g1, prod g2]` for the label groups,
/// copying only when the permuted data is not already row-major. With `swap`, also accept
/// the order `g0, g2, g1` and return the transposed view of it.
fn as_3d<'a>(
    x: &'a CowArray<'_, f32, IxDyn>,
    labels: &[Label],
    groups: [&[Label]; 3],
    store: &'a mut Option<ndarray::ArrayD<f32>>,
) -> Result<ArrayView3<'a, f32>, String> {
    let pos = |l: &Label| labels.iter().position(|a| a == l).unwrap_or(0);
    let dims: Vec<usize> = groups
        .iter()
        .map(|g| g.iter().map(|l| x.shape()[pos(l)]).product())
        .collect();
    let try_order = |order: [usize; 3]| {
        let perm: Vec<usize> = order
            .iter()
            .flat_map(|&g| groups[g].iter().map(pos))
            .collect();
        let v = x.view().permuted_axes(perm);
        v.is_standard_layout().then_some(order)
    };
    let view3 =
        |v: ArrayViewD<'a, f32>, order: [usize; 3]| -> Result<ArrayView3<'a, f32>, String> {
            let v3 = v
                .into_shape_with_order((dims[order[0]], dims[order[1]], dims[order[2]]))
                .map_err(|e| e.to_string())?;
            Ok(if order[1] == 2 {
                v3.permuted_axes([0, 2, 1])
            } else {
                v3
            })
        };
    for order in [[0, 1, 2], [0, 2, 1]] {
        if try_order(order).is_some() {
            let perm: Vec<usize> = order
                .iter()
                .flat_map(|&g| groups[g].iter().map(pos))
                .collect();
            return view3(x.view().permuted_axes(perm), order);
        }
    }
    let perm: Vec<usize> = groups.iter().flat_map(|g| g.iter().map(pos)).collect();
    let owned = store.insert(
        x.view()
            .permuted_axes(perm)
            .as_standard_layout()
            .into_owned(),
    );
    view3(owned.view(), [0, 1, 2])
}

/// Two-operand contraction as a batched matrix product.
fn contract_pair(
    p: &Plan,
    a: &ArrayViewD<f32>,
    b: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> Result<(), String> {
    let (la, lb, out) = (&p.inputs[0], &p.inputs[1], &p.output);
    let (a, la) = presum(a, la, |l| !lb.contains(&l) && !out.contains(&l));
    let (b, lb) = presum(b, lb, |l| !la.contains(&l) && !out.contains(&l));
    let batch: Vec<Label> = out
        .iter()
        .copied()
        .filter(|l| la.contains(l) && lb.contains(l))
        .collect();
    let m: Vec<Label> = out
        .iter()
        .copied()
        .filter(|l| la.contains(l) && !lb.contains(l))
        .collect();
    let n: Vec<Label> = out
        .iter()
        .copied()
        .filter(|l| lb.contains(l) && !la.contains(l))
        .collect();
    let k: Vec<Label> = la
        .iter()
        .copied()
        .filter(|l| lb.contains(l) && !out.contains(l))
        .collect();
    let (mut sa, mut sb) = (None, None);
    let a3 = as_3d(&a, &la, [&batch, &m, &k], &mut sa)?;
    let b3 = as_3d(&b, &lb, [&batch, &k, &n], &mut sb)?;
    let (bt, mt, nt) = (a3.shape()[0], a3.shape()[1], b3.shape()[2]);
    let mul = |c: &mut ndarray::ArrayViewMut3<f32>| {
        for i in 0..bt {
            let mut ci = c.index_axis_mut(Axis(0), i);
            general_mat_mul(
                1.0,
                &a3.index_axis(Axis(0), i),
                &b3.index_axis(Axis(0), i),
                0.0,
                &mut ci,
            );
        }
    };
    // Labels of the product's axes, and where each output label sits among them.
    let prod_labels: Vec<Label> = batch.iter().chain(&m).chain(&n).copied().collect();
    let perm: Vec<usize> = out
        .iter()
        .map(|l| prod_labels.iter().position(|a| a == l).unwrap_or(0))
        .collect();
    let identity = perm.iter().enumerate().all(|(i, &q)| i == q);
    if identity && y.is_standard_layout() {
        y.fill(0.0);
        let mut y3 = y
            .view_mut()
            .into_shape_with_order((bt, mt, nt))
            .map_err(|e| e.to_string())?;
        mul(&mut y3);
        return Ok(());
    }
    let mut c = Array3::<f32>::zeros((bt, mt, nt));
    mul(&mut c.view_mut());
    let dims: Vec<usize> = prod_labels.iter().map(|&l| p.size(l)).collect();
    let c = c
        .into_shape_with_order(IxDyn(&dims))
        .map_err(|e| e.to_string())?;
    y.assign(&c.permuted_axes(perm));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;
    use ndarray::ArrayD;
    use std::collections::HashMap;

    fn einsum(eq: &str, xs: &[ArrayViewD<f32>]) -> ArrayD<f32> {
        let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape()).collect();
        let s = einsum_shape(eq, &shapes).unwrap();
        let mut y = ArrayD::from_elem(IxDyn(&s), f32::NAN);
        run_einsum(eq, xs, &mut y.view_mut()).unwrap();
        // and into a column-major output
        let mut yf = fortran(&ArrayD::from_elem(IxDyn(&s), f32::NAN));
        run_einsum(eq, xs, &mut yf.view_mut()).unwrap();
        assert_eq!(y, yf);
        y
    }

    /// Plain einsum for explicit, letters-only equations: loop over every assignment.
    fn naive(eq: &str, xs: &[&ArrayD<f32>]) -> ArrayD<f32> {
        let (lhs, rhs) = eq.split_once("->").unwrap();
        let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
        let out: Vec<char> = rhs.chars().collect();
        let mut size = HashMap::new();
        for (t, x) in terms.iter().zip(xs) {
            for (c, &d) in t.iter().zip(x.shape()) {
                size.insert(*c, d);
            }
        }
        let mut letters: Vec<char> = size.keys().copied().collect();
        letters.sort();
        let oshape: Vec<usize> = out.iter().map(|c| size[c]).collect();
        let mut y = ArrayD::<f64>::zeros(IxDyn(&oshape));
        let total: usize = letters.iter().map(|c| size[c]).product();
        for mut flat in 0..total {
            let mut val = HashMap::new();
            for c in letters.iter().rev() {
                val.insert(*c, flat % size[c]);
                flat /= size[c];
            }
            let mut p = 1.0f64;
            for (t, x) in terms.iter().zip(xs) {
                let i: Vec<usize> = t.iter().map(|c| val[c]).collect();
                p *= x[IxDyn(&i)] as f64;
            }
            let oi: Vec<usize> = out.iter().map(|c| val[c]).collect();
            y[IxDyn(&oi)] += p;
        }
        y.mapv(|v| v as f32)
    }

    #[test]
    fn by_hand() {
        let a = arr(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b = arr(&[2, 2], &[5.0, 6.0, 7.0, 8.0]);
        assert_eq!(
            einsum("ij,jk->ik", &[a.view(), b.view()]),
            arr(&[2, 2], &[19.0, 22.0, 43.0, 50.0])
        );
        assert_eq!(
            einsum("ij,jk", &[a.view(), b.view()]),
            arr(&[2, 2], &[19.0, 22.0, 43.0, 50.0])
        );
        assert_eq!(einsum("ii->i", &[a.view()]), arr(&[2], &[1.0, 4.0]));
        assert_eq!(einsum("ii", &[a.view()]), arr(&[], &[5.0]));
        assert_eq!(einsum("ij->", &[a.view()]), arr(&[], &[10.0]));
        assert_eq!(
            einsum("ji", &[a.view()]),
            arr(&[2, 2], &[1.0, 3.0, 2.0, 4.0])
        );
        assert_eq!(
            einsum("ij->ji", &[a.view()]),
            arr(&[2, 2], &[1.0, 3.0, 2.0, 4.0])
        );
        assert_eq!(
            einsum(" i j , j k -> k i ", &[a.view(), b.view()]),
            arr(&[2, 2], &[19.0, 43.0, 22.0, 50.0])
        );
        let v = arr(&[2], &[1.0, -1.0]);
        assert_eq!(einsum("i,i->", &[v.view(), v.view()]), arr(&[], &[2.0]));
        assert_eq!(
            einsum("i,j->ij", &[v.view(), v.view()]),
            arr(&[2, 2], &[1.0, -1.0, -1.0, 1.0])
        );
        assert_eq!(
            einsum("ij,jk,k->i", &[a.view(), b.view(), v.view()]),
            arr(&[2], &[-3.0, -7.0])
        );
        assert_eq!(
            einsum("ij,ij->ij", &[a.view(), b.view()]),
            arr(&[2, 2], &[5.0, 12.0, 21.0, 32.0])
        );
        // LGA's degenerate pair: k and v are each summed out of one operand
        let q = arr(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let w = arr(&[1, 1, 3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(
            einsum("bhqk,bhvd->bhqd", &[q.view(), w.view()]),
            arr(&[1, 1, 2, 2], &[6.0, 6.0, 14.0, 14.0])
        );
    }

    #[test]
    fn ellipsis() {
        let mut rng = Rng(41);
        let a = rng.arr(&[3, 1, 2, 5]);
        let b = rng.arr(&[4, 5, 7]);
        let y = einsum("...ij,...jk->...ik", &[a.view(), b.view()]);
        assert_eq!(y.shape(), &[3, 4, 2, 7]);
        for i in 0..3 {
            for j in 0..4 {
                let am = a.index_axis(Axis(0), i).index_axis(Axis(0), 0).to_owned();
                let bm = b.index_axis(Axis(0), j).to_owned();
                let want = naive("ij,jk->ik", &[&am.into_dyn(), &bm.into_dyn()]);
                let got = y.index_axis(Axis(0), i).index_axis(Axis(0), j).to_owned();
                assert_close(&got, &want, 1e-5);
            }
        }
        // implicit output puts the ellipsis first
        assert_eq!(
            einsum_shape("ij...", &[&[2, 3, 4, 5]]).unwrap(),
            vec![4, 5, 2, 3]
        );
        assert_eq!(
            einsum_shape("...ii->...i", &[&[4, 3, 3]]).unwrap(),
            vec![4, 3]
        );
        let d = rng.arr(&[4, 3, 3]);
        let y = einsum("...ii->...i", &[d.view()]);
        for (idx, &v) in y.indexed_iter() {
            assert_eq!(v, d[[idx[0], idx[1], idx[1]]]);
        }
    }

    #[test]
    fn random_vs_naive() {
        let cases: &[(&str, &[&[usize]])] = &[
            ("bhqd,bhkd->bhqk", &[&[2, 3, 7, 5], &[2, 3, 13, 5]]),
            ("bhqk,bhvd->bhqd", &[&[1, 3, 7, 13], &[1, 3, 17, 5]]),
            ("bhqk,bhkd->bhqd", &[&[2, 1, 7, 13], &[2, 1, 13, 3]]),
            ("ij,jk->ik", &[&[7, 13], &[13, 3]]),
            ("bij,bjk->bik", &[&[3, 7, 1], &[3, 1, 17]]),
            ("ii->i", &[&[7, 7]]),
            ("ij->", &[&[3, 13]]),
            ("ij->j", &[&[3, 13]]),
            ("ijk->kji", &[&[3, 7, 1]]),
            ("iij,jk->ik", &[&[3, 3, 7], &[7, 5]]),
            ("ij,jk,kl->il", &[&[3, 7], &[7, 5], &[5, 13]]),
            ("abc,cd->dab", &[&[3, 1, 7], &[7, 13]]),
            ("ab,cd->abcd", &[&[3, 7], &[1, 5]]),
            ("bhqd,bhkd->bqhk", &[&[2, 3, 7, 5], &[2, 3, 13, 5]]),
            ("ik,kj->", &[&[3, 7], &[7, 5]]),
            ("ijk,jil->kl", &[&[3, 7, 5], &[7, 3, 13]]),
            ("i,i->i", &[&[17], &[17]]),
            ("ij,ij->", &[&[13, 3], &[13, 3]]),
        ];
        let mut rng = Rng(42);
        for &(eq, shapes) in cases {
            let xs: Vec<ArrayD<f32>> = shapes.iter().map(|s| rng.arr(s)).collect();
            let refs: Vec<&ArrayD<f32>> = xs.iter().collect();
            let want = naive(eq, &refs);
            let views: Vec<ArrayViewD<f32>> = xs.iter().map(|x| x.view()).collect();
            assert_close(&einsum(eq, &views), &want, 1e-5);
            let fs: Vec<ArrayD<f32>> = xs.iter().map(fortran).collect();
            let fviews: Vec<ArrayViewD<f32>> = fs.iter().map(|x| x.view()).collect();
            assert_close(&einsum(eq, &fviews), &want, 1e-5);
            // reversed strides on every operand
            let rev: Vec<ArrayD<f32>> = xs
                .iter()
                .map(|x| {
                    x.slice_each_axis(|_| ndarray::Slice::new(0, None, -1))
                        .to_owned()
                })
                .collect();
            let rrefs: Vec<&ArrayD<f32>> = rev.iter().collect();
            let rviews: Vec<ArrayViewD<f32>> = xs
                .iter()
                .map(|x| x.slice_each_axis(|_| ndarray::Slice::new(0, None, -1)))
                .collect();
            assert_close(&einsum(eq, &rviews), &naive(eq, &rrefs), 1e-5);
            // the generic loop agrees too (run_einsum sends two-operand cases to GEMM)
            let plan = parse(eq, shapes).unwrap();
            let mut y = ArrayD::from_elem(IxDyn(want.shape()), f32::NAN);
            generic(&plan, &views, &mut y.view_mut()).unwrap();
            assert_close(&y, &want, 1e-5);
        }
    }

    #[test]
    fn errors() {
        let s = |eq: &str, shapes: &[&[usize]]| einsum_shape(eq, shapes).is_err();
        assert!(s("ij,jk->ik", &[&[2, 3], &[4, 5]]));
        assert!(s("ij,jk->ik", &[&[2, 3]]));
        assert!(s("ij->ik", &[&[2, 3]]));
        assert!(s("ij->ii", &[&[2, 3]]));
        assert!(s("ij", &[&[2, 3, 4]]));
        assert!(s("ijk", &[&[2, 3]]));
        assert!(s("i1", &[&[2, 3]]));
        assert!(s("i..j", &[&[2, 3]]));
        assert!(s("...i...", &[&[2, 3]]));
        assert!(s("ij->i->j", &[&[2, 3]]));
        assert!(s("ii", &[&[2, 3]]));
        assert!(s("...i,...i", &[&[2, 3], &[3, 3]]));
        let e = einsum_shape("ij,jk->ik", &[&[2, 3], &[4, 5]])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[4, 5]") && e.contains("ij,jk->ik"), "{e}");
        let a = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[2, 2]));
        assert!(run_einsum("ij,jk->ik", &[a.view(), a.view()], &mut y.view_mut()).is_err());
        assert!(run_einsum("ij->ji", &[a.view()], &mut y.view_mut()).is_err());
        assert!(run_einsum("ij->ji", &[], &mut y.view_mut()).is_err());
    }
}
