"""MISO: pretrained vision encoders, LIIF implicit queries, a Space2Vec location encoder and
InfoNCE alignment for permafrost and soil-order prediction at any point."""
