"""The setup installs exactly the pinned torch, torchattacks 3.5.1 AND a current streamlit side by side."""

from importlib.metadata import version

from packaging.version import Version


def test_pinned_versions():
    assert version("torch").split("+")[0] == "2.14.1"
    assert version("torchvision").split("+")[0] == "0.29.1"
    assert version("torchattacks") == "3.5.1"


def test_torchattacks_pin_did_not_downgrade_streamlit_or_requests():
    # torchattacks 3.5.1 declares requests~=2.25.1; resolving it would force streamlit 1.22 or torchattacks 3.3.0.
    assert Version(version("streamlit")) >= Version("1.50")
    assert Version(version("requests")) >= Version("2.32")


def test_torchattacks_imports_with_current_requests():
    import torchattacks

    assert torchattacks.__version__ == "3.5.1"
    assert hasattr(torchattacks, "VMIFGSM")
