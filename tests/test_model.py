import mujoco
import numpy as np
import pytest

from kinesis_neuro import model as mdl


@pytest.fixture(scope="module")
def model():
    return mdl.load_model()


def test_model_structure(model):
    assert model.nu == 80 and model.opt.timestep == 0.002
    joints = mdl.joint_table(model)
    assert (joints.kind == "independent").sum() == 14 and (joints.kind == "coupled").sum() == 14
    assert set(joints.index[joints.kind == "independent"]) == set(mdl.LEG_JOINTS)
    assert joints.loc["root", "type"] == "mjJNT_FREE"


def test_muscle_table(model):
    table = mdl.muscle_table(model)
    assert len(table) == 80 and (table.side == "right").sum() == 40
    assert table.loc["soleus_r", "anatomical_name"] == "soleus" and table.loc["vaslat_l", "group"] == "quadriceps"
    assert (table.max_isometric_force > 0).all() and table.optimal_fibre_length.between(0.01, 0.6).all()
    groups = mdl.muscle_groups(model)
    assert set(groups["triceps_surae_r"]) == {"gasmed_r", "gaslat_r", "soleus_r"}


def test_infinite_floor(model):
    floors = [g for g in range(model.ngeom) if model.geom_bodyid[g] == 0]
    assert len(floors) == 1 and model.geom_type[floors[0]] == mujoco.mjtGeom.mjGEOM_PLANE
    assert model.geom_size[floors[0]][0] == 0  # infinite
    finite = mdl.load_model(infinite_floor=False)
    assert any(finite.geom_type[g] == mujoco.mjtGeom.mjGEOM_CYLINDER for g in range(finite.ngeom))


def test_couplings_match_mujoco_equality_constraints(model):
    """Coupled coordinates from the polynomials satisfy MuJoCo's own equality constraints."""
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    joints = mdl.joint_table(model)
    for knee in rng.uniform(0.0, 2.0, 5):
        q = model.qpos0.copy()
        q[joints.loc[["knee_angle_r", "knee_angle_l"], "qpos_index"]] = knee
        data.qpos[:] = mdl.apply_couplings(model, q)
        mujoco.mj_forward(model, data)
        eq_rows = data.efc_type == mujoco.mjtConstraint.mjCNSTR_EQUALITY
        assert np.abs(data.efc_pos[eq_rows]).max() < 1e-12


def test_coupling_jacobian_matches_finite_differences(model):
    couplings = mdl.Couplings(model)
    joints = mdl.joint_table(model)
    q = mdl.apply_couplings(model, model.qpos0)
    knee = joints.loc["knee_angle_r", "qpos_index"]
    q[knee] = 0.7
    q = couplings.apply(q)
    h = 1e-6
    q2 = q.copy()
    q2[knee] += h
    q2 = couplings.apply(q2)
    v = np.zeros(model.nv)
    mujoco.mj_differentiatePos(model, v, h, q, q2)
    G = couplings.jacobian(q)
    np.testing.assert_allclose(G[:, 6 + mdl.LEG_JOINTS.index("knee_angle_r")], v, atol=1e-5)
