"""Scores a row as the sum of its four features; a negative feature fails the request, so tests can count failures."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            features = pb_utils.get_input_tensor_by_name(request, "features").as_numpy()
            if (features < 0).any():
                # Raised, not returned as an error response: Triton counts a request as failed only then.
                raise pb_utils.TritonModelException("negative feature")
            score = features.sum(axis=1, keepdims=True).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("score", score)]))
        return responses
