import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipelag.algorithms.common.packing import Packing


def test_a_packed_tree_is_one_array_per_dtype_and_unpacks_to_itself_also_vmapped():
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3), "n": jnp.int32(7),
            "key": jax.random.PRNGKey(3), "flag": jnp.array([True, False]), "none": None,
            "nested": (jnp.full((2, 2), 5.0), jnp.arange(4, dtype=jnp.int32))}
    pk = Packing(tree)
    packed = pk.pack(tree)
    assert sorted(packed) == ["bool", "float32", "int32", "uint32"]
    assert packed["float32"].shape == (6 + 3 + 4,)
    back = pk.unpack(packed)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(tree), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    # a batch of trees (one per seed) packs under vmap with the per-tree packing
    batch = jax.tree.map(lambda x: jnp.stack([x, x + 1]), tree)
    packed2 = jax.vmap(pk.pack)(batch)
    np.testing.assert_array_equal(jax.vmap(pk.unpack)(packed2)["nested"][1], batch["nested"][1])
    with pytest.raises(ValueError, match="structure"):
        pk.pack({"w": tree["w"]})
