"""What a node must have: the same code, the images and the shared folder."""

import os

from mammography.data.cluster.nodes import code_digest, node_problems, requirements


def test_requirements_sample_first_middle_last_and_carry_this_machine(tmp_path):
    images = [(f"/x/{i}.dcm", i) for i in range(10)]
    req = requirements(images, shared_folder=tmp_path, writable=True)
    assert req.images == [images[0], images[5], images[9]]
    assert req.shared_folder == os.path.abspath(tmp_path) and req.writable
    assert req.code_digest == code_digest() and len(req.token) == 32
    assert req.probe_name.startswith(".mammography-cluster-check-")
    assert "numpy" in req.libraries


def test_a_node_that_sees_everything_has_no_problem(tmp_path):
    image = tmp_path / "a.dcm"
    image.write_bytes(b"x" * 7)
    req = requirements([(str(image), 7)], shared_folder=tmp_path, writable=True)
    (tmp_path / req.probe_name).write_text(req.token)
    assert node_problems(req) == []


def test_each_problem_named_with_its_fix(tmp_path):
    image = tmp_path / "a.dcm"
    image.write_bytes(b"x" * 7)
    req = requirements([(str(image), 8), ("/nowhere/b.dcm", 1)], shared_folder=tmp_path)
    req.code_digest = "0" * 16
    # No check file: the node's folder of that name is not the driver's.
    problems = node_problems(req)
    assert any("runs other mammography code" in p and "same version" in p for p in problems)
    assert any(f"sees {image} with 7 bytes, this machine with 8" in p for p in problems)
    assert any(f"cannot see --cache-dir {tmp_path}" in p and "check file written there is "
               "missing" in p and "same path" in p for p in problems)
    (tmp_path / req.probe_name).write_text("another token")
    assert any("sees another" in p for p in node_problems(req))
    req.images = [("/nowhere/b.dcm", 1)]
    assert any("cannot see the image /nowhere/b.dcm" in p for p in node_problems(req))
