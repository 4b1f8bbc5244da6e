//! Attribute comparison between a source model and a destination model:
//! typed and in place when both sides have the same Rust type, through
//! values when they do not. The differ asks; the store only holds models.

use std::borrow::Cow;

use serde_json::Value;

use super::Slot;
use super::{ModelVec, TypedVec};
use crate::model::{AnyModel, DiffModel};

/// Whether `src[slot]` and `dst[oslot]` have equal attributes.
pub(crate) fn attrs_equal<T: DiffModel>(src: &TypedVec<T>, slot: Slot, dst: &dyn ModelVec, oslot: Slot) -> bool {
    let (Some(a), Some(b)) = (src.get(slot), dst.get(oslot)) else {
        return false;
    };
    match (a.downcast_ref::<T>(), b.downcast_ref::<T>()) {
        (Some(a), Some(b)) => a.attributes_equal(b),
        _ => value_changes(a, b).is_empty(),
    }
}

/// Differing attributes of `src[slot]` and `dst[oslot]`, as (name, source
/// value, destination value).
pub(crate) fn changes<T: DiffModel>(
    src: &TypedVec<T>,
    slot: Slot,
    dst: &dyn ModelVec,
    oslot: Slot,
) -> Vec<(Cow<'static, str>, Value, Value)> {
    let (Some(a), Some(b)) = (src.get(slot), dst.get(oslot)) else {
        return Vec::new();
    };
    match (a.downcast_ref::<T>(), b.downcast_ref::<T>()) {
        (Some(ta), Some(tb)) => {
            let mut idx = Vec::new();
            ta.changed_attributes(tb, &mut idx);
            let schema = DiffModel::schema(ta);
            idx.into_iter()
                .map(|i| {
                    let name = &schema.attributes[i].name;
                    (
                        name.clone(),
                        ta.attribute(name).unwrap_or(Value::Null),
                        tb.attribute(name).unwrap_or(Value::Null),
                    )
                })
                .collect()
        }
        _ => value_changes(a, b),
    }
}

/// Changes between two models of different Rust types: only attributes both
/// sides have are compared, using the source side's comparison mode.
fn value_changes(src: &dyn AnyModel, dst: &dyn AnyModel) -> Vec<(Cow<'static, str>, Value, Value)> {
    let mut out = Vec::new();
    for f in src.schema().attributes.iter() {
        let (Some(a), Some(b)) = (src.attribute(&f.name), dst.attribute(&f.name)) else {
            continue;
        };
        if !crate::model::cmp::values(f.compare, &a, &b) {
            out.push((f.name.clone(), a, b));
        }
    }
    out
}
