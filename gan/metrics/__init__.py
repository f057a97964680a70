"""The scores: the project's classifier (classifier, classifier_net), FID/KID and friends
(scores), precision/recall/density/coverage (prdc) and Stacked MNIST's modes (stacked).
"""
