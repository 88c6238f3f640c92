"""The module base (parameters, buffers, submodules, train/eval, state_dict, device moves) and the containers.

Mirrors :class:`torch.nn.Module`, without autograd: a parameter is a plain array (NumPy on the cpu, a numba device
array on cuda), kept in ``_parameters`` and reached as an attribute; ``Parameter(x)`` marks an array as one when it
is assigned to a module attribute. Keys of ``state_dict()`` are torch's, so a torch model's state_dict loads directly.
"""

import itertools
import numbers
import operator
from collections import OrderedDict, namedtuple

import numpy as np

from . import _tensors

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict"]


class Parameter:
    """Marks an array as a learnable parameter of the module it is assigned to.

    Mirrors :class:`torch.nn.Parameter` for assignment: ``self.weight = Parameter(np.ones(3))`` registers the array
    under ``weight``, and ``self.weight`` then reads back the plain array itself (there is no autograd in nbops, so
    nothing needs to wrap it). A CPU torch tensor is copied to NumPy; a CUDA array stays on the device.

    Args:
        data: the array (NumPy, numba device array, CuPy, torch tensor or array-like).
        requires_grad: accepted for torch compatibility; ignored.
    """

    __slots__ = ("data",)

    def __init__(self, data=None, requires_grad=True):
        self.data = _tensors.as_param(np.zeros(0, np.float32) if data is None else data)

    def __repr__(self):
        return f"Parameter containing:\n{self.data!r}"


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods; ``remove()`` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _addindent(text, spaces):
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


class Module:
    """Base class of every nbops module. Mirrors :class:`torch.nn.Module` (forward only, no autograd).

    Subclasses call ``super().__init__()``, assign parameters (``Parameter(array)``), buffers
    (``register_buffer``) and submodules as attributes, and define ``forward``; calling the module runs the forward
    pre-hooks, ``forward`` and the forward hooks.
    """

    training: bool

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected arguments: {args} {kwargs}")
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ----------------------------------------------------------------------------------------------- registration
    def forward(self, *input):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def _check_name(self, name, kind):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string. Got {type(name).__name__}")
        if name == "":
            raise KeyError(f'{kind} name can\'t be empty string ""')
        if "." in name:
            raise KeyError(f'{kind} name can\'t contain ".", got: {name}')

    def register_parameter(self, name, param):
        """Add a parameter (an array, a :class:`Parameter`, or None) under ``name``."""
        self._check_name(name, "parameter")
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if isinstance(param, Parameter):
            param = param.data
        elif param is not None and not _tensors.is_array(param):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter '{name}' (array or None required)"
            )
        self._parameters[name] = _tensors.as_param(param)

    def register_buffer(self, name, tensor, persistent=True):
        """Add a buffer (an array that is state but not a parameter, e.g. running statistics) under ``name``.

        ``persistent=False`` keeps it out of ``state_dict()``.
        """
        self._check_name(name, "buffer")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not _tensors.is_array(tensor):
            raise TypeError(
                f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' (array or None required)"
            )
        self._buffers[name] = _tensors.as_param(tensor)
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name, module):
        """Add a child module under ``name`` (None reserves the name)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._check_name(name, "module")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        d = self.__dict__
        params, buffers, modules = d.get("_parameters"), d.get("_buffers"), d.get("_modules")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._forget(name, "_parameters")
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None and not _tensors.is_array(value):
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter '{name}' (array or None expected)"
                )
            params[name] = _tensors.as_param(value)
        elif isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._forget(name, "_modules")
            modules[name] = value
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as child module '{name}' (Module or None expected)"
                )
            modules[name] = value
        elif buffers is not None and name in buffers:
            if value is not None and not _tensors.is_array(value):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' (array or None expected)")
            buffers[name] = _tensors.as_param(value)
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name, keep):
        """Drop ``name`` from every table but ``keep`` (where it is about to be set, keeping its position)."""
        self.__dict__.pop(name, None)
        for key in ("_parameters", "_buffers", "_modules"):
            if key != keep:
                self.__dict__[key].pop(name, None)
        self._non_persistent_buffers_set.discard(name)

    def __getattr__(self, name):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            table = d.get(key)
            if table is not None and name in table:
                return table[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for key in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(key, ()):
                del self.__dict__[key][name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        keys = list(object.__dir__(self))
        keys += list(self._parameters) + list(self._buffers) + list(self._modules)
        return sorted(k for k in set(keys) if not k[:1].isdigit())

    # ------------------------------------------------------------------------------------------------- traversal
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """Yield ``(name, module)`` for this module and every descendant, depth first."""
        if memo is None:
            memo = set()
        if remove_duplicate and id(self) in memo:
            return
        if remove_duplicate:
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, table, prefix, recurse, remove_duplicate):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mod_prefix, module in mods:
            for name, value in getattr(module, table).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                if remove_duplicate:
                    seen.add(id(value))
                yield mod_prefix + ("." if mod_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """Yield ``(name, array)`` for every parameter, with torch's dotted names."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call ``fn`` on every submodule (children first) and on this module; return self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def get_submodule(self, target):
        """The submodule at dotted path ``target`` ('' is this module)."""
        module = self
        if target == "":
            return module
        for item in target.split("."):
            if item not in module._modules or module._modules[item] is None:
                raise AttributeError(f"{module._get_name()} has no attribute `{item}`")
            module = module._modules[item]
        return module

    def get_parameter(self, target):
        path, _, name = target.rpartition(".")
        module = self.get_submodule(path)
        if name not in module._parameters:
            raise AttributeError(f"{module._get_name()} has no parameter `{name}`")
        return module._parameters[name]

    def get_buffer(self, target):
        path, _, name = target.rpartition(".")
        module = self.get_submodule(path)
        if name not in module._buffers:
            raise AttributeError(f"{module._get_name()} has no buffer `{name}`")
        return module._buffers[name]

    # ---------------------------------------------------------------------------------------------- modes, calls
    def train(self, mode=True):
        """Set training mode (``mode=True``) or evaluation mode on this module and all descendants; return self.

        Training mode changes what e.g. :class:`Dropout` and :class:`BatchNorm2d` do: dropout drops and batch norm
        normalises with the batch's statistics and updates its running statistics; in evaluation mode dropout is the
        identity and batch norm uses the running statistics.
        """
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def eval(self):
        """Set evaluation mode; same as ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Accepted for torch compatibility: nbops has no autograd, so this only returns self."""
        return self

    def register_forward_pre_hook(self, hook):
        """``hook(module, args)`` runs before ``forward``; a non-None result replaces the positional arguments."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook):
        """``hook(module, args, output)`` runs after ``forward``; a non-None result replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def __call__(self, *args, **kwargs):
        if not (self._forward_pre_hooks or self._forward_hooks):  # the common call: no list copies to make
            return self.forward(*args, **kwargs)
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # -------------------------------------------------------------------------------------------- state dicts
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for name, value in self._parameters.items():
            if value is not None:
                destination[prefix + name] = value
        for name, value in self._buffers.items():
            if value is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = value

    def state_dict(self, *, destination=None, prefix="", keep_vars=False):
        """An ordered dict of every parameter and persistent buffer, keyed like torch (``layer1.0.conv1.weight``).

        The values are the module's own arrays (no copies), as torch's tensors share storage with the module.
        """
        if destination is None:
            destination = OrderedDict()
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def _load_from_state_dict(self, state_dict, prefix, strict, missing_keys, unexpected_keys, error_msgs, assign):
        local = OrderedDict((k, v) for k, v in self._parameters.items() if v is not None)
        non_persistent = self._non_persistent_buffers_set
        local.update((k, v) for k, v in self._buffers.items() if v is not None and k not in non_persistent)
        for name, current in local.items():
            key = prefix + name
            if key not in state_dict:
                if strict:
                    missing_keys.append(key)
                continue
            value = state_dict[key]
            if not _tensors.is_array(value):
                if not isinstance(value, (numbers.Number, np.generic)):
                    error_msgs.append(
                        f'While copying the parameter named "{key}", expected an array from checkpoint but received '
                        f"{type(value)}"
                    )
                    continue
                value = np.asarray(value)
            shape, want = _tensors.shape_of(value), _tensors.shape_of(current)
            if want == () and shape == (1,):
                value, shape = _tensors.to_host(value).reshape(()), ()
            if shape != want:
                error_msgs.append(
                    f"size mismatch for {key}: copying a param with shape {shape} from checkpoint, "
                    f"the shape in current model is {want}."
                )
                continue
            if assign:
                table = self._parameters if name in self._parameters else self._buffers
                table[name] = _tensors.move(_tensors.as_param(value), _tensors.device_of(current))
            else:
                _tensors.copy_into(current, value)
        if strict:
            for key in state_dict:
                if not key.startswith(prefix):
                    continue
                parts = key[len(prefix):].split(".", 1)
                if len(parts) > 1:
                    if parts[0] not in self._modules:
                        unexpected_keys.append(key)
                elif parts[0] not in local:
                    unexpected_keys.append(key)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy parameters and buffers from ``state_dict`` into this module (and descendants) in place.

        Mirrors :meth:`torch.nn.Module.load_state_dict`: the values may be NumPy arrays, torch tensors (CPU or CUDA),
        numba device arrays or CuPy arrays; each is cast to the parameter's dtype and copied onto its device. With
        ``strict=True`` missing or unexpected keys raise ``RuntimeError`` with torch's message; a shape mismatch
        always does. ``assign=True`` replaces the arrays instead of copying into them.

        Returns:
            a named tuple ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        missing, unexpected, errors = [], [], []

        def load(module, prefix):
            module._load_from_state_dict(state_dict, prefix, True, missing, unexpected, errors, assign)
            for name, child in module._modules.items():
                if child is not None:
                    load(child, prefix + name + ".")

        load(self, "")
        if strict:
            if unexpected:
                keys = ", ".join(f'"{k}"' for k in unexpected)
                errors.insert(0, f"Unexpected key(s) in state_dict: {keys}. ")
            if missing:
                keys = ", ".join(f'"{k}"' for k in missing)
                errors.insert(0, f"Missing key(s) in state_dict: {keys}. ")
        if errors:
            details = "\n\t".join(errors)
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t{details}")
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------------------------------ devices, dtypes
    def _apply_arrays(self, fn):
        for module in self.modules():
            for table in (module._parameters, module._buffers):
                for name, value in table.items():
                    if value is not None:
                        table[name] = fn(module, name, value)
        return self

    def to(self, *args, device=None, dtype=None, non_blocking=False):
        """Move parameters and buffers to ``device`` ('cpu' or 'cuda') and/or cast floating ones to ``dtype``.

        ``to("cuda")``, ``to(np.float64)``, ``to("cuda", np.float64)``, ``to(device=..., dtype=...)``; torch device
        and dtype objects are accepted too. Returns self (modified in place, as torch does).
        """
        for a in args:
            try:
                device = _tensors.resolve_device(a) if device is None else device
                continue
            except (TypeError, ValueError):
                pass
            dtype = a if dtype is None else dtype
        device = _tensors.resolve_device(device)
        dtype = _tensors.resolve_dtype(dtype)
        if dtype is not None and dtype.kind != "f":
            raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dtype}")

        def fn(module, name, value):
            target = device or _tensors.device_of(value)
            cast = dtype if dtype is not None and _tensors.is_floating(value) else None
            if module._keeps_on_host(name):
                target = "cpu"
            return _tensors.move(value, target, cast)

        return self._apply_arrays(fn)

    def _keeps_on_host(self, name):
        """Whether buffer ``name`` is a host-side counter that stays on the cpu when the module moves."""
        return False

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # ------------------------------------------------------------------------------------------------ printing
    def _get_name(self):
        return type(self).__name__

    def extra_repr(self):
        """The module's own settings for ``repr``, one line (torch's format)."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({key}): " + _addindent(repr(m), 2) for key, m in self._modules.items()]
        lines = extra_lines + child_lines
        text = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                text += extra_lines[0]
            else:
                text += "\n  " + "\n  ".join(lines) + "\n"
        return text + ")"


def _index(idx, size, kind):
    idx = operator.index(idx)
    if not -size <= idx < size:
        raise IndexError(f"index {idx} is out of range for {kind} of length {size}")
    return idx % size


class Sequential(Module):
    """Runs its modules in order, feeding each one's output to the next. Mirrors :class:`torch.nn.Sequential`.

    ``Sequential(m1, m2, ...)`` names the children '0', '1', ...; ``Sequential(OrderedDict(name=module, ...))``
    keeps the names.
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for key, module in args[0].items():
                self.add_module(key, module)
        else:
            for idx, module in enumerate(args):
                self.add_module(str(idx), module)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[_index(idx, len(self), "Sequential")]

    def __setitem__(self, idx, module):
        key = list(self._modules)[_index(idx, len(self), "Sequential")]
        self.add_module(key, module)

    def __delitem__(self, idx):
        keys = list(self._modules)
        for key in keys[idx] if isinstance(idx, slice) else [keys[_index(idx, len(self), "Sequential")]]:
            del self._modules[key]
        if all(k.isdigit() for k in keys):
            items = list(self._modules.values())
            self._modules.clear()
            for i, m in enumerate(items):
                self._modules[str(i)] = m

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        n = len(self)
        if not -n <= index <= n:
            raise IndexError(f"Index out of range: {index}")
        index = index + n if index < 0 else index
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self.add_module(str(i), m)
        return self

    def forward(self, input):
        for module in self._modules.values():
            input = module(input)
        return input


class ModuleList(Module):
    """Holds submodules in a list, registered as children '0', '1', .... Mirrors :class:`torch.nn.ModuleList`."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(list(self._modules.values())[idx])
        return self._modules[str(_index(idx, len(self), "ModuleList"))]

    def __setitem__(self, idx, module):
        self.add_module(str(_index(idx, len(self), "ModuleList")), module)

    def __delitem__(self, idx):
        items = list(self._modules.values())
        if isinstance(idx, slice):
            del items[idx]
        else:
            del items[_index(idx, len(self), "ModuleList")]
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __iadd__(self, modules):
        return self.extend(modules)

    def __add__(self, other):
        return ModuleList(list(self) + list(other))

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        if isinstance(modules, Module) and not isinstance(modules, (ModuleList, Sequential)):
            raise TypeError("ModuleList.extend should be called with an iterable, but got " + type(modules).__name__)
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList is a container and has no forward; call its modules")

    def __repr__(self):
        reprs = [repr(m) for m in self]
        if not reprs:
            return self._get_name() + "()"
        blocks = []  # [start, end, repr]
        for i, r in enumerate(reprs):
            if blocks and blocks[-1][2] == r:
                blocks[-1][1] = i
            else:
                blocks.append([i, i, r])
        lines = []
        for start, end, r in blocks:
            line = f"({start}): {r}" if start == end else f"({start}-{end}): {end - start + 1} x {r}"
            lines.append(_addindent(line, 2))
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


class ModuleDict(Module):
    """Holds submodules in an ordered dict keyed by name. Mirrors :class:`torch.nn.ModuleDict`."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()

    def pop(self, key):
        return self._modules.pop(key)

    def clear(self):
        self._modules.clear()

    def update(self, modules):
        items = modules.items() if hasattr(modules, "items") else modules
        for key, module in items:
            self[key] = module

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict is a container and has no forward; call its modules")
