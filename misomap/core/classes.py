"""The target classes every model and map shares (order matters: it is the class index)."""

SOIL_ORDERS: tuple[str, ...] = ("Andisols", "Entisols", "Gelisols", "Histosols", "Inceptisols",
                                "Mollisols", "Spodosols")
PERMAFROST_CLASSES: tuple[str, ...] = ("absent", "present")
