# %% [markdown]
# # Solutions to chapter 10
#
# Reference solutions to the exercises of {doc}`../lessons/10_frontier`. Each solution is
# collapsed: open it only after you have tried the exercise and its hints. Running this notebook
# shows every check passing.
#
# %%
import torch
import torch.nn.functional as F

from utils.exercises import ch10

#
# %% [markdown]
# ## Exercise 10.1 - Late interaction: MaxSim over padded pages
#
# %% tags=hide-input
# Solution 10.1
import torch


def late_interaction_scores(query, patches, patch_mask):
    """query [n, D], patches [P, M, D], patch_mask bool [P, M] -> [P]."""
    similarity = torch.einsum("nd,pmd->npm", query, patches)  # [n, P, M]
    similarity = similarity.masked_fill(~patch_mask[None], float("-inf"))
    return similarity.amax(dim=2).sum(dim=0)  # best real patch per query vector, summed


#
# %% tags=nbval-check-output
ch10.late_interaction_scores.check(late_interaction_scores)
#
# %% [markdown]
# ## Exercise 10.2 - Keep the k highest-scoring image tokens, in their original order
#
# %% tags=hide-input
# Solution 10.2
import torch


def prune_tokens(tokens, scores, keep):
    """tokens [B, N, D], scores [B, N] -> (kept [B, keep, D], index [B, keep])."""
    index = scores.topk(keep, dim=1).indices.sort(dim=1).values  # grid order
    kept = tokens.gather(1, index[..., None].expand(-1, -1, tokens.shape[2]))
    return kept, index


#
# %% tags=nbval-check-output
ch10.prune_tokens.check(prune_tokens)
#
# %% [markdown]
# ## Exercise 10.3 - Continuous actions to tokens: uniform bins
#
# %% tags=hide-input
# Solution 10.3
import torch


def action_tokens(actions, low, high, bins):
    """actions [N, A], low and high [A], bins -> long [N, A] in 0..bins-1."""
    width = (high - low) / bins
    clipped = torch.maximum(torch.minimum(actions, high), low)
    tokens = torch.floor((clipped - low) / width).long()
    return tokens.clamp(max=bins - 1)  # the top edge belongs to the last bin


#
# %% tags=nbval-check-output
ch10.action_tokens.check(action_tokens)
#
# %% [markdown]
# ## Exercise 10.4 - One step of the targeted fast gradient sign method
#
# %% tags=hide-input
# Solution 10.4
import torch
import torch.nn.functional as F


def targeted_fgsm_step(model, images, targets, epsilon):
    """[N, C, H, W] in [0, 1] -> one step of epsilon down the sign of the target's
    loss gradient."""
    images = images.clone().requires_grad_(True)
    loss = F.cross_entropy(model(images), targets)
    (gradient,) = torch.autograd.grad(loss, images)
    return (images - epsilon * gradient.sign()).clamp(0, 1).detach()


#
# %% tags=nbval-check-output
ch10.targeted_fgsm_step.check(targeted_fgsm_step)
#
# %% [markdown]
# ## Exercise 10.5 - Recall of the first stage (an ablation)
#
# %% tags=hide-input
# Solution 10.5
import torch


def candidate_recall(neighbour_pages, relevant, counts):
    """[Q, n, K] neighbour pages, bool [Q, P], counts -> % of queries found."""
    found = []
    for k in counts:
        candidates = neighbour_pages[:, :, :k].flatten(1)  # [Q, n * k]: all first k
        found.append(100 * relevant.gather(1, candidates).any(1).float().mean())
    return torch.stack(found)


#
# %% tags=nbval-check-output
ch10.candidate_recall.check(candidate_recall)
#
# %%
ch10.progress()
