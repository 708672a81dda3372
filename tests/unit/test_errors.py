import pytest

from carebus import errors


@pytest.mark.parametrize(
    "error_type",
    [
        errors.NotFoundError,
        errors.ConflictError,
        errors.ForbiddenError,
        errors.MalformedMessageError,
        errors.NothingToBillError,
        errors.PayloadTooLargeError,
        errors.UnsupportedMediaTypeError,
    ],
)
def test_every_domain_error_can_be_caught_as_a_carebus_error(error_type: type[Exception]) -> None:
    with pytest.raises(errors.CarebusError):
        raise error_type("no PHI here")
