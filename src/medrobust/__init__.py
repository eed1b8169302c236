"""medrobust: reproduce 'Useful nonrobust features are ubiquitous in biomedical images'."""

__version__ = "0.1.0"
