"""``ImagePool``: a history of generated images for the discriminators' updates (CycleGAN uses 50).

From Shrivastava et al. 2017, as Zhu et al. 2017 use it.
The discriminator then judges, for each new fake, either that fake or (with probability ½, once the pool is full) an
older one it replaces, so it does not chase only the generator's latest outputs. Written here because neither
MONAI nor Lightning has one; unlike the reference implementation it draws its random numbers from a given
``torch.Generator`` (a fixed number per image), so a seeded step is reproducible, and its contents go into
checkpoints (:meth:`state` / :meth:`load_state`), so a resumed run continues exactly.
"""

from __future__ import annotations

import torch

from medgen.errors import InputError


class ImagePool:
    """Up to ``size`` earlier fake images of one discriminator.

    Args:
        size: How many images the pool holds (0: no pool, :meth:`query` returns its input).
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise InputError("adversarial.pool_size", f"expected 0 or more images, got {size}")
        self.size = size
        self.images: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.images is None else int(self.images.shape[0])

    def query(self, fake: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The images the discriminator judges in place of ``fake`` ``(B, C, *spatial)``; updates the pool.

        While the pool fills, each fake is stored and returned itself. Once full, each fake is, with probability
        ½, returned itself, otherwise swapped with a random stored image, which is returned instead.

        Returns:
            ``(B, C, *spatial)``, detached.
        """
        fake = fake.detach()
        if self.size == 0 or fake.shape[0] == 0:
            return fake
        if self.images is not None and self.images.device != fake.device:
            self.images = self.images.to(fake.device)  # restored from a checkpoint loaded on the CPU
        swap = torch.rand(fake.shape[0], generator=generator, device=generator.device) < 0.5
        slot = torch.randint(self.size, (fake.shape[0],), generator=generator, device=generator.device)
        out = []
        for i in range(fake.shape[0]):
            image = fake[i : i + 1]
            if len(self) < self.size:
                self.images = image.clone() if self.images is None else torch.cat([self.images, image])
                out.append(image)
            elif bool(swap[i]):
                assert self.images is not None
                j = int(slot[i])
                out.append(self.images[j : j + 1].clone())
                self.images[j : j + 1] = image
            else:
                out.append(image)
        return torch.cat(out)

    def state(self) -> torch.Tensor | None:
        """The stored images ``(N, C, *spatial)`` (None while empty), for a checkpoint."""
        return None if self.images is None else self.images.clone()

    def load_state(self, images: torch.Tensor | None) -> None:
        """Restore the images of :meth:`state`."""
        self.images = None if images is None else images.clone()
