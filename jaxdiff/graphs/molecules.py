"""Molecules <-> integer graphs <-> networkx, for QM9-style heavy-atom graphs.

A molecule with at most ``n`` heavy atoms is the integer graph of
:mod:`jaxdiff.graphs.graph`: ``atoms`` int32 (n,), an index into ``ATOMS`` or -1
for padding, and ``bonds`` int32 (n, n), symmetric, an index into ``BONDS``
(0 = no bond). Bonds are kekulised (aromatic rings become alternating single and
double bonds) and hydrogens are implicit: sanitising the rebuilt molecule
recomputes them from the default valences.

Formal charges are not encodable: a charged atom raises ``ValueError`` (QM9 has a
few hundred zwitterions, which the QM9 loader skips and counts). Stereochemistry
is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np
from rdkit import Chem

ATOMS = ("C", "N", "O", "F")
BONDS = (None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE)
AROMATIC_BONDS = (*BONDS, Chem.BondType.AROMATIC)


def mol_to_ints(mol: Chem.Mol, max_nodes: int, atom_types: Sequence[str] = ATOMS, *,
                kekulize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """RDKit molecule -> (atoms int32 (max_nodes,), bonds int32 (max_nodes, max_nodes)).

    Explicit hydrogens are removed and, with ``kekulize``, bonds kekulised (indices into ``BONDS``) on a
    copy; without it aromatic bonds stay aromatic (indices into ``AROMATIC_BONDS``). ``mol`` is not
    modified. Raises ValueError for a charged atom, an element outside ``atom_types``, a bond outside the
    vocabulary, or more heavy atoms than ``max_nodes``.
    """
    mol = Chem.RemoveHs(mol, sanitize=False)
    if mol.GetNumAtoms() > max_nodes:
        raise ValueError(f"molecule has {mol.GetNumAtoms()} heavy atoms, more than max_nodes={max_nodes}")
    if kekulize:
        Chem.Kekulize(mol, clearAromaticFlags=True)
    bond_types = BONDS if kekulize else AROMATIC_BONDS
    bond_index = {bond: i for i, bond in enumerate(bond_types) if bond is not None}
    vocab = {symbol: i for i, symbol in enumerate(atom_types)}
    out_atoms = np.full((max_nodes,), -1, np.int32)
    for atom in mol.GetAtoms():
        symbol = atom.GetSymbol()
        if symbol not in vocab:
            raise ValueError(f"atom {symbol!r} is not in the atom vocabulary {tuple(atom_types)}")
        if atom.GetFormalCharge() != 0:
            raise ValueError(f"atom {symbol} {atom.GetIdx()} has formal charge {atom.GetFormalCharge():+d}; "
                             "charged atoms are not encodable")
        out_atoms[atom.GetIdx()] = vocab[symbol]
    out_bonds = np.zeros((max_nodes, max_nodes), np.int32)
    for bond in mol.GetBonds():
        if bond.GetBondType() not in bond_index:
            raise ValueError(f"bond type {bond.GetBondType()} is not one of {bond_types[1:]}")
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        out_bonds[i, j] = out_bonds[j, i] = bond_index[bond.GetBondType()]
    return out_atoms, out_bonds


def smiles_to_ints(smiles: str, max_nodes: int, atom_types: Sequence[str] = ATOMS) -> tuple[np.ndarray, np.ndarray]:
    """SMILES -> (atoms (max_nodes,), bonds (max_nodes, max_nodes)); see :func:`mol_to_ints`."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"invalid SMILES {smiles!r}")
    return mol_to_ints(mol, max_nodes, atom_types)


def ints_to_mol(atoms, bonds, sanitize: bool = False, atom_types: Sequence[str] = ATOMS) -> Chem.Mol:
    """(atoms (n,), bonds (n, n)) -> RDKit molecule of the real atoms, in order.

    Padded atoms (-1) and bonds touching them are dropped; only the upper
    triangle of ``bonds`` is read. With ``sanitize`` the molecule is sanitised in
    place (RDKit raises on a valence error); without it, it is returned as built.
    """
    atoms, bonds = np.asarray(atoms), np.asarray(bonds)
    if atoms.ndim != 1 or bonds.shape != atoms.shape * 2:
        raise ValueError(f"atoms must be (n,) and bonds (n, n), got {atoms.shape} and {bonds.shape}")
    mol = Chem.RWMol()
    index = {}
    for i, a in enumerate(atoms.tolist()):
        if a >= 0:
            index[i] = mol.AddAtom(Chem.Atom(atom_types[a]))
    for i, j in zip(*np.nonzero(np.triu(bonds, k=1))):
        if i in index and j in index:
            mol.AddBond(index[i], index[j], BONDS[bonds[i, j]])
    mol = mol.GetMol()
    if sanitize:
        Chem.SanitizeMol(mol)
    return mol


def mol_to_smiles(mol: Chem.Mol | None) -> str | None:
    """Canonical SMILES of a sanitised copy of ``mol``; None if it is None, empty or fails to sanitise."""
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    mol = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(mol)
    except Chem.MolSanitizeException:
        return None
    return Chem.MolToSmiles(mol)


def to_networkx(atoms, bonds, atom_types: Sequence[str] = ATOMS) -> nx.Graph:
    """(atoms (n,), bonds (n, n)) -> nx.Graph on the real atoms' indices.

    Node attribute "atom" is the element symbol, edge attribute "bond" the bond class (1..3).
    """
    atoms, bonds = np.asarray(atoms), np.asarray(bonds)
    g = nx.Graph()
    real = [i for i, a in enumerate(atoms.tolist()) if a >= 0]
    g.add_nodes_from((i, {"atom": atom_types[atoms[i]]}) for i in real)
    g.add_edges_from((i, j, {"bond": int(bonds[i, j])}) for i in real for j in real if i < j and bonds[i, j] > 0)
    return g


def from_networkx(g: nx.Graph, max_nodes: int, atom_types: Sequence[str] = ATOMS) -> tuple[np.ndarray, np.ndarray]:
    """nx.Graph with "atom" / "bond" attributes -> (atoms (max_nodes,), bonds (max_nodes, max_nodes)).

    Nodes are numbered in the graph's node order.
    """
    if g.number_of_nodes() > max_nodes:
        raise ValueError(f"graph has {g.number_of_nodes()} nodes, more than max_nodes={max_nodes}")
    position = {node: k for k, node in enumerate(g.nodes)}
    atoms = np.full((max_nodes,), -1, np.int32)
    for node, symbol in g.nodes(data="atom"):
        if symbol not in atom_types:
            raise ValueError(f"atom {symbol!r} of node {node!r} is not in the atom vocabulary {tuple(atom_types)}")
        atoms[position[node]] = atom_types.index(symbol)
    bonds = np.zeros((max_nodes, max_nodes), np.int32)
    for u, v, b in g.edges(data="bond"):
        if not 0 < b < len(BONDS):
            raise ValueError(f"bond {b!r} of edge ({u!r}, {v!r}) must be in [1, {len(BONDS)})")
        bonds[position[u], position[v]] = bonds[position[v], position[u]] = b
    return atoms, bonds
